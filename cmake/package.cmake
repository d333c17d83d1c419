# cpack -G DEB (in the build tree): the install components of cmake/install.cmake
# as three Debian packages, depending on Debian's own runtime libraries:
#   pgrelay        the daemon: /usr/bin/pgrelay, man page, /etc/pgrelay (conffiles),
#                  the systemd unit (not enabled) and a pgrelay system user
#   libpgrelay0    /usr/lib/libpgrelay.so.0
#   libpgrelay-dev headers, libpgrelay.a, libpgrelay.so, CMake and pkg-config files
set(PGRELAY_DEB_MAINTAINER "pgrelay maintainers <maintainers@pgrelay.invalid>"
    CACHE STRING "Maintainer field of the .deb packages")

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME pgrelay)
set(CPACK_PACKAGE_VENDOR "pgrelay")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DIRECTORY ${CMAKE_BINARY_DIR}/packages)
# install_system.cmake decides /etc from the prefix at install time: that needs
# CMAKE_INSTALL_PREFIX=/usr with DESTDIR as the staging root, not a staging
# prefix; with SET_DESTDIR, cpack takes the prefix from CPACK_INSTALL_PREFIX.
set(CPACK_SET_DESTDIR ON)
set(CPACK_INSTALL_PREFIX /usr)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)  # the build is RelWithDebInfo; lintian refuses unstripped binaries
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL daemon library dev)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)  # <package>_<version>_<arch>.deb
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${PGRELAY_DEB_MAINTAINER}")
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)  # dpkg-shlibdeps: libpqxx-6.4, libpq5, libssl3, libnats3.4, ...
set(CPACK_DEBIAN_ENABLE_COMPONENT_DEPENDS ON)
# Each description's first line is its package's synopsis (no common summary
# is set: cpack would prepend it to every description).
# Maintainer scripts 0755, conffiles 0644, whatever the checkout's modes.
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)

set(CPACK_DEBIAN_DAEMON_PACKAGE_NAME pgrelay)
set(CPACK_DEBIAN_DAEMON_PACKAGE_SECTION database)
set(CPACK_DEBIAN_DAEMON_PACKAGE_DEPENDS "adduser")  # postinst; shlibdeps adds the libraries
set(CPACK_DEBIAN_DAEMON_PACKAGE_CONTROL_EXTRA
    ${CMAKE_SOURCE_DIR}/packaging/deb/postinst ${CMAKE_SOURCE_DIR}/packaging/deb/conffiles)
set(CPACK_COMPONENT_DAEMON_DESCRIPTION "reliable event relay on a PostgreSQL outbox
pgrelay claims events that transactions write into pgrelay.db_events (with
pgrelay.emit() or capture triggers) and delivers them to handlers (stdout,
commands, webhooks, SQL functions, NATS) at least once, in order per key, with
leases, exponential backoff and dead letters. This package holds the daemon,
its systemd unit (installed, not enabled) and its configuration in
/etc/pgrelay.")

set(CPACK_DEBIAN_LIBRARY_PACKAGE_NAME libpgrelay${PGRELAY_SOVERSION})
set(CPACK_DEBIAN_LIBRARY_PACKAGE_SECTION libs)
# The shlibs file (only packages with a shared library get one) lets
# dpkg-shlibdeps of programs linked with libpgrelay find the package; the
# ldconfig trigger refreshes the linker cache after install and removal.
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
set(CPACK_DEBIAN_LIBRARY_PACKAGE_CONTROL_EXTRA ${CMAKE_SOURCE_DIR}/packaging/deb/triggers)
set(CPACK_COMPONENT_LIBRARY_DESCRIPTION "pgrelay relay as a library (runtime)
libpgrelay runs the pgrelay relay inside a program, with in-process C++
handlers for event types. This package holds the shared library.")

set(CPACK_DEBIAN_DEV_PACKAGE_NAME libpgrelay-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
# rapidjson-dev for the public headers; the rest for static links of libpgrelay.a.
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS "rapidjson-dev, libpqxx-dev, libpq-dev, libnats-dev, libssl-dev")
set(CPACK_COMPONENT_DEV_DEPENDS library)
set(CPACK_COMPONENT_DEV_DESCRIPTION "pgrelay relay as a library (development files)
libpgrelay runs the pgrelay relay inside a program, with in-process C++
handlers for event types. This package holds the headers, the static library
and the files for find_package(pgrelay) and pkg-config.")

# Every package's /usr/share/doc/<package>: copyright and changelog (named
# changelog.gz, not changelog.Debian.gz: the version has no Debian revision,
# so these are native packages).
# Only the packages get them (EXCLUDE_FROM_ALL: a plain cmake --install skips them).
string(TIMESTAMP PGRELAY_DEB_DATE "%a, %d %b %Y %H:%M:%S +0000" UTC)  # honours SOURCE_DATE_EPOCH
configure_file(packaging/deb/changelog.in ${CMAKE_BINARY_DIR}/deb/changelog @ONLY)
execute_process(COMMAND gzip -n -9 -f -k ${CMAKE_BINARY_DIR}/deb/changelog RESULT_VARIABLE gzip_rc)
if(NOT gzip_rc EQUAL 0)
  message(FATAL_ERROR "gzip of the package changelog failed (${gzip_rc})")
endif()
foreach(component daemon library dev)
  string(TOUPPER ${component} c)
  install(FILES packaging/deb/copyright ${CMAKE_BINARY_DIR}/deb/changelog.gz
    DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/doc/${CPACK_DEBIAN_${c}_PACKAGE_NAME}
    COMPONENT ${component} EXCLUDE_FROM_ALL)
endforeach()
install(FILES packaging/deb/pgrelay.lintian-overrides DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/lintian/overrides
  RENAME pgrelay COMPONENT daemon EXCLUDE_FROM_ALL)

include(CPack)
