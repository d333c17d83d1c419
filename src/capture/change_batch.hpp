// Decoded transactions on their way into pgrelay.db_events: pgoutput messages in
// (capture/pgoutput_codec.hpp), the JSON that pgrelay.materialize_wal()
// (triggers/25_wal_capture.sql) reads out. No I/O; unit-tested on recorded bytes.
// One owner (the capture thread).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "capture/pgoutput_codec.hpp"

namespace pgrelay {

// The prefix of the logical messages emit() writes in capture mode "wal", and of
// pgrelay.wake()'s (whose content is empty: a wake, not an event).
inline constexpr const char* kCaptureMessagePrefix = "pgrelay";

// Collects whole transactions, in the commit order the stream delivers them, as
// one JSON array of changes:
//   {"c": commit LSN, "op": "insert"|"update"|"delete", "r": relation oid,
//    "new": {column: value}, "old": {column: value}}
//   {"c": commit LSN, "op": "message", "m": emit()'s document}
// A value is the column's text output as a JSON string, the JSON itself for json
// and jsonb columns, null for NULL; the server turns the strings back into typed
// values with the table's row type, so documents match trigger capture's
// to_jsonb(NEW). An unchanged TOASTed value of an update is taken from the old
// row (REPLICA IDENTITY FULL sends it whole), else left out.
// Changes of a transaction become ready only at its commit, so a batch never
// holds part of one.
class ChangeBatch {
 public:
  // Feeds one message; true when it was a Commit (ready() grew).
  // Throws PgoutputError for a change of a relation never described.
  bool feed(const PgoutputMessage& m);

  bool in_transaction() const { return in_transaction_; }
  // Changes of committed transactions not yet taken.
  size_t ready() const { return ready_count_; }
  // Transactions committed and not yet taken, and the end LSN of the last one.
  size_t transactions() const { return transactions_; }
  uint64_t end_lsn() const { return end_lsn_; }

  // The ready changes as a JSON array ("[]" when none), and forgets them.
  std::string take();
  // The stream was lost: everything not taken is forgotten (it is sent again),
  // relations too (a new stream describes them again).
  void reset();

 private:
  struct Relation {
    std::vector<RelationColumn> columns;
  };
  void add_row(const PgoutputMessage& m);
  void add_message(const PgoutputMessage& m);
  void add_open(const char* change, size_t size);  // one more change of the open transaction

  std::unordered_map<uint32_t, Relation> relations_;
  bool in_transaction_ = false;
  std::string commit_lsn_;  // of the open transaction, from its Begin
  std::string open_;        // the open transaction's changes, comma-separated
  size_t open_count_ = 0;
  std::string ready_;
  size_t ready_count_ = 0;
  size_t transactions_ = 0;
  uint64_t end_lsn_ = 0;
};

}  // namespace pgrelay
