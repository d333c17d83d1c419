// The pgoutput plugin's logical replication messages (protocol version 1, with
// `messages 'true'`): bytes in, messages out. No I/O, no libpq; unit-tested on
// bytes recorded from a real server (tests/unit/pgoutput_codec_test.cpp). The
// bytes are the payload of one XLogData ('w') message of the replication stream
// (listen/replication_codec.hpp), or one row of pg_logical_slot_peek_binary_changes.
// Pure values and functions.
#pragma once
#include <cstddef>
#include <cstdint>
#include <exception>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pgrelay {

// One column value of a row as pgoutput sends it: the type's text output.
struct TupleValue {
  enum class Kind {
    null,       // 'n'
    unchanged,  // 'u': a TOASTed value the update did not change; pgoutput does not send it
    text,       // 't': the type's output function
    binary,     // 'b': only with the `binary` option, which pgrelay never asks for
  };
  Kind kind = Kind::null;
  std::string data;
};
using Tuple = std::vector<TupleValue>;

struct RelationColumn {
  bool part_of_key = false;  // flags bit 1: part of the replica identity
  std::string name;
  uint32_t type_oid = 0;
  int32_t type_modifier = -1;
};

// Every message kind pgrelay acts on; the fields a kind does not have stay empty.
struct PgoutputMessage {
  enum class Kind {
    begin,     // 'B'  final_lsn (the commit's LSN), commit_time_us, xid
    commit,    // 'C'  commit_lsn, end_lsn (just past the commit record), commit_time_us
    relation,  // 'R'  relation_oid, schema, table, replica_identity, columns
    insert,    // 'I'  relation_oid, new_tuple
    update,    // 'U'  relation_oid, old_tuple ('O' whole row or 'K' key, if sent), new_tuple
    delete_,   // 'D'  relation_oid, old_tuple ('O' or 'K')
    truncate,  // 'T'  truncated_oids, truncate_options (1 cascade, 2 restart identity)
    message,   // 'M'  transactional, message_lsn, prefix, content
    other,     // origin, type, and kinds of later protocol versions: skipped
  };
  Kind kind = Kind::other;
  uint64_t final_lsn = 0;
  uint64_t commit_lsn = 0;
  uint64_t end_lsn = 0;
  int64_t commit_time_us = 0;  // µs since 2000-01-01
  uint32_t xid = 0;
  uint32_t relation_oid = 0;
  std::string schema;
  std::string table;
  char replica_identity = 'd';  // d default, n nothing, f full, i index
  std::vector<RelationColumn> columns;
  char old_kind = 0;  // 'O' whole old row, 'K' its key columns only, 0 none sent
  std::optional<Tuple> old_tuple;
  std::optional<Tuple> new_tuple;
  std::vector<uint32_t> truncated_oids;
  uint8_t truncate_options = 0;
  bool transactional = false;
  uint64_t message_lsn = 0;
  std::string prefix;
  std::string content;
};

// Thrown for bytes that end before their message does or carry an unknown
// tuple value kind: the stream is broken, never skipped past (an event would be lost).
struct PgoutputError : std::exception {
  explicit PgoutputError(std::string what) : what_(std::move(what)) {}
  const char* what() const noexcept override { return what_.c_str(); }

 private:
  std::string what_;
};

// Reads one message. REQUIRES: `bytes` is one whole message.
PgoutputMessage parse_pgoutput(std::string_view bytes);

// An LSN as PostgreSQL prints it ("0/1D44350"), and back; nullopt if malformed.
std::string format_lsn(uint64_t lsn);
std::optional<uint64_t> parse_lsn(std::string_view text);

}  // namespace pgrelay
