# cmake --install build [--prefix P]: what a system (or a .deb) gets. Three
# components, which cpack turns into three Debian packages:
#   daemon   bin/pgrelay, its man page, config, systemd unit, docs  -> pgrelay
#   library  libpgrelay.so.0                                        -> libpgrelay0
#   dev      headers, libpgrelay.so, libpgrelay.a, CMake and pkg-config files -> libpgrelay-dev
# Every destination is relative to the prefix chosen at install time, so one
# build tree installs into a temporary prefix, /usr/local or a package.
include(CMakePackageConfigHelpers)

install(TARGETS pgrelay_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT daemon)
install(TARGETS pgrelay_shared EXPORT pgrelay-targets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT library NAMELINK_COMPONENT dev)
install(TARGETS pgrelay_static EXPORT pgrelay-targets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT dev)
# Only include/pgrelay/: the headers of src/ are never installed.
install(DIRECTORY include/pgrelay DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT dev
  FILES_MATCHING PATTERN "*.hpp")

# find_package(pgrelay) -> pgrelay::pgrelay (shared) and pgrelay::pgrelay_static.
set(PGRELAY_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/pgrelay)
install(EXPORT pgrelay-targets NAMESPACE pgrelay:: FILE pgrelayTargets.cmake
  DESTINATION ${PGRELAY_CMAKE_DIR} COMPONENT dev)
configure_package_config_file(packaging/pgrelayConfig.cmake.in ${CMAKE_BINARY_DIR}/pgrelayConfig.cmake
  INSTALL_DESTINATION ${PGRELAY_CMAKE_DIR})
# 0.x: a new minor release may break the API (and bumps PGRELAY_SOVERSION if it breaks the ABI).
write_basic_package_version_file(${CMAKE_BINARY_DIR}/pgrelayConfigVersion.cmake COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_BINARY_DIR}/pgrelayConfig.cmake ${CMAKE_BINARY_DIR}/pgrelayConfigVersion.cmake
  DESTINATION ${PGRELAY_CMAKE_DIR} COMPONENT dev)

# pkg-config pgrelay. The prefix is found from the .pc file's own place, so the
# file is right wherever --prefix puts it.
file(RELATIVE_PATH PGRELAY_PC_TO_PREFIX /root/${CMAKE_INSTALL_LIBDIR}/pkgconfig /root)
string(REGEX REPLACE "/$" "" PGRELAY_PC_TO_PREFIX "${PGRELAY_PC_TO_PREFIX}")
list(TRANSFORM PGRELAY_STATIC_SYSTEM_LIBS PREPEND "-l" OUTPUT_VARIABLE PGRELAY_PC_LIBS_PRIVATE)
list(JOIN PGRELAY_PC_LIBS_PRIVATE " " PGRELAY_PC_LIBS_PRIVATE)
configure_file(packaging/pgrelay.pc.in ${CMAKE_BINARY_DIR}/pgrelay.pc @ONLY)
install(FILES ${CMAKE_BINARY_DIR}/pgrelay.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig COMPONENT dev)

# The man page, made from the real --help of the binary just built
# (cmake/manpage.cmake), so it cannot drift from the options.
# Off by default in the sanitizer and fuzzing trees: they are never installed,
# and their binary would run under the sanitizers at build time.
if(PGRELAY_SANITIZE OR PGRELAY_FUZZ)
  set(PGRELAY_MANPAGE_DEFAULT OFF)
else()
  set(PGRELAY_MANPAGE_DEFAULT ON)
endif()
option(PGRELAY_MANPAGE "Generate the man page with help2man" ${PGRELAY_MANPAGE_DEFAULT})
if(PGRELAY_MANPAGE)
  find_program(HELP2MAN help2man)
  if(NOT HELP2MAN)
    message(FATAL_ERROR "help2man not found: install it (scripts/lib.sh lists it) or configure with -DPGRELAY_MANPAGE=OFF")
  endif()
  set(PGRELAY_MAN ${CMAKE_BINARY_DIR}/pgrelay.1.gz)
  add_custom_command(OUTPUT ${PGRELAY_MAN}
    COMMAND ${CMAKE_COMMAND} -DPGRELAY=$<TARGET_FILE:pgrelay_cli> -DHELP2MAN=${HELP2MAN}
            -DOUT=${PGRELAY_MAN} -P ${CMAKE_SOURCE_DIR}/cmake/manpage.cmake
    DEPENDS pgrelay_cli ${CMAKE_SOURCE_DIR}/cmake/manpage.cmake
    COMMENT "Generating pgrelay.1 from pgrelay --help")
  add_custom_target(pgrelay_manpage ALL DEPENDS ${PGRELAY_MAN})
  install(FILES ${PGRELAY_MAN} DESTINATION ${CMAKE_INSTALL_MANDIR}/man1 COMPONENT daemon)
endif()

# What an operator reads, beside the binary.
install(FILES README.md docs/operations.md config/pgrelay.example.json DESTINATION ${CMAKE_INSTALL_DOCDIR}
  COMPONENT daemon)
install(FILES config/README.md DESTINATION ${CMAKE_INSTALL_DOCDIR} RENAME configuration.md COMPONENT daemon)

# The config directory and the systemd unit go where the prefix says at
# install time (cmake/install_system.cmake): /etc for /usr as GNUInstallDirs
# does, <prefix>/etc otherwise, with the unit's paths rewritten to match.
install(CODE "set(PGRELAY_SOURCE_DIR \"${CMAKE_SOURCE_DIR}\")
set(PGRELAY_BINARY_DIR \"${CMAKE_BINARY_DIR}\")
set(PGRELAY_BINDIR \"${CMAKE_INSTALL_BINDIR}\")
include(\"${CMAKE_SOURCE_DIR}/cmake/install_system.cmake\")" COMPONENT daemon)
