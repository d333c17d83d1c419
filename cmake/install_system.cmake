# Installs the config directory and the systemd unit; included by the daemon
# component's install(CODE) at install time, when CMAKE_INSTALL_PREFIX is the
# prefix really used (cmake --install --prefix, or /usr under cpack).
#   prefix /usr:  /etc/pgrelay/              <prefix>/lib/systemd/system/pgrelay.service
#   any other:    <prefix>/etc/pgrelay/      <prefix>/lib/systemd/system/pgrelay.service
if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  set(etc_dir "/etc/pgrelay")  # as GNUInstallDirs' CMAKE_INSTALL_FULL_SYSCONFDIR
else()
  set(etc_dir "${CMAKE_INSTALL_PREFIX}/etc/pgrelay")
endif()
set(unit_dir "${CMAKE_INSTALL_PREFIX}/lib/systemd/system")

# config/pgrelay.service is written for a hand install (/usr/local/bin,
# /etc/pgrelay); point it at this install's binary and config instead.
file(READ "${PGRELAY_SOURCE_DIR}/config/pgrelay.service" unit)
foreach(path IN ITEMS "/usr/local/bin/pgrelay" "/etc/pgrelay/")
  string(FIND "${unit}" "${path}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "config/pgrelay.service no longer names ${path}: update cmake/install_system.cmake")
  endif()
endforeach()
string(REPLACE "/usr/local/bin/pgrelay" "${CMAKE_INSTALL_PREFIX}/${PGRELAY_BINDIR}/pgrelay" unit "${unit}")
string(REPLACE "/etc/pgrelay/" "${etc_dir}/" unit "${unit}")
set(staged "${PGRELAY_BINARY_DIR}/install-staging")
file(MAKE_DIRECTORY "${staged}")
file(WRITE "${staged}/pgrelay.service" "${unit}")
file(INSTALL DESTINATION "${unit_dir}" TYPE FILE FILES "${staged}/pgrelay.service")

# pgrelay.json: a safe default (no routes, so nothing is claimed) that the
# unit can start with; pgrelay.env: secrets, readable by root only.
# An installed one was edited by its operator: a reinstall keeps it (a package
# gets the same from dpkg, which knows them as conffiles).
foreach(name IN ITEMS pgrelay.json pgrelay.env)
  if(EXISTS "$ENV{DESTDIR}${etc_dir}/${name}")
    message(STATUS "Keeping: $ENV{DESTDIR}${etc_dir}/${name}")
    continue()
  endif()
  set(mode OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
  if(name STREQUAL "pgrelay.env")
    set(mode OWNER_READ OWNER_WRITE)
  endif()
  file(INSTALL DESTINATION "${etc_dir}" TYPE FILE FILES "${PGRELAY_SOURCE_DIR}/packaging/${name}" PERMISSIONS ${mode})
endforeach()
