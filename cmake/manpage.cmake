# Writes OUT (pgrelay.1.gz) with help2man from PGRELAY's own --help and
# --version, plus a COMMANDS section holding every subcommand's --help.
# Run with cmake -P by the build; PGRELAY is the binary just built.
get_filename_component(bindir "${PGRELAY}" DIRECTORY)
# Run as plain "pgrelay" from PATH: CLI11 prints argv[0] in its usage lines.
set(ENV{PATH} "${bindir}:$ENV{PATH}")
# The page's text must not depend on the builder's locale.
set(ENV{LC_ALL} C.UTF-8)

execute_process(COMMAND pgrelay --help OUTPUT_VARIABLE top RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "pgrelay --help failed (${rc})")
endif()

# Subcommands are the lines of the "Subcommands:" block indented by two spaces.
string(REGEX REPLACE ".*\nSubcommands:\n" "" block "${top}")
string(REPLACE "\n" ";" lines "${block}")
set(names "")
foreach(line IN LISTS lines)
  if(line MATCHES "^  ([a-z][a-z-]*) ")
    list(APPEND names ${CMAKE_MATCH_1})
  endif()
endforeach()
if(NOT names)
  message(FATAL_ERROR "no subcommands found in pgrelay --help")
endif()

# roff: backslashes escaped, a leading dot or quote defused, text kept as laid out.
set(section "[COMMANDS]\n")
foreach(name IN LISTS names)
  execute_process(COMMAND pgrelay ${name} --help OUTPUT_VARIABLE help RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "pgrelay ${name} --help failed (${rc})")
  endif()
  string(REPLACE "\\" "\\e" help "${help}")
  string(REGEX REPLACE "(^|\n)([.'])" "\\1\\\\&\\2" help "${help}")
  string(APPEND section ".SS \"pgrelay ${name}\"\n.nf\n${help}.fi\n")
endforeach()
string(APPEND section "[SEE ALSO]\nconfiguration.md (every config key) and operations.md (deployment, upgrades,\n"
       "metrics) in /usr/share/doc/pgrelay, or share/doc/pgrelay under another install prefix.\n")

get_filename_component(outdir "${OUT}" DIRECTORY)
set(include "${outdir}/pgrelay.h2m")
set(man "${outdir}/pgrelay.1")
file(WRITE "${include}" "${section}")
execute_process(
  COMMAND "${HELP2MAN}" --no-info --section=1 --no-discard-stderr
          "--name=reliable event relay on a PostgreSQL outbox" "--include=${include}" "--output=${man}" pgrelay
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "help2man failed (${rc})")
endif()
# -n: no name or time stamp in the gzip header, so the file is reproducible.
execute_process(COMMAND gzip -n -9 -f "${man}" RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "gzip ${man} failed (${rc})")
endif()
