# The installable library: the public API of include/pgrelay/ (a facade in
# src/api/ over the internal `pgrelay` target) as libpgrelay.so.0 and
# libpgrelay.a. Both are made of the objects the main build compiles anyway,
# so they cost two links, not a second build.

set(PGRELAY_SOVERSION 0)  # bump on any ABI break of include/pgrelay/ (sizes, virtuals, signatures)

# pgrelay_static_closure(<out> <target>): the project's own static libraries
# that <target> links, transitively, <target> included. Found by walking the
# link graph, so a new module linked into `pgrelay` is bundled without an edit here.
function(pgrelay_static_closure out target)
  set(todo ${target})
  set(found "")
  while(todo)
    list(POP_FRONT todo t)
    if(NOT TARGET ${t} OR t IN_LIST found)
      continue()
    endif()
    get_target_property(imported ${t} IMPORTED)
    get_target_property(type ${t} TYPE)
    if(imported OR NOT type STREQUAL "STATIC_LIBRARY")
      continue()
    endif()
    list(APPEND found ${t})
    get_target_property(deps ${t} LINK_LIBRARIES)
    if(deps)
      list(APPEND todo ${deps})
    endif()
  endwhile()
  set(${out} ${found} PARENT_SCOPE)
endfunction()

# The facade: compiled once, linked into both libraries and into the tests.
add_library(pgrelay_api OBJECT src/api/config.cpp src/api/event.cpp src/api/relay.cpp)
target_link_libraries(pgrelay_api PUBLIC pgrelay)

# Every object that ends up in libpgrelay.so must be position independent, and
# hidden unless PGRELAY_API says otherwise. Set here, on the internal targets
# too, so the modules' own CMake stays as it is.
pgrelay_static_closure(PGRELAY_INTERNAL_LIBS pgrelay)
set_target_properties(pgrelay_api ${PGRELAY_INTERNAL_LIBS} PROPERTIES
  POSITION_INDEPENDENT_CODE ON
  CXX_VISIBILITY_PRESET hidden
  VISIBILITY_INLINES_HIDDEN ON)

set(PGRELAY_PUBLIC_INCLUDE $<BUILD_INTERFACE:${CMAKE_SOURCE_DIR}/include> $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)

# libpgrelay.so.0: the facade plus what it needs of the internal archives. The
# version script keeps the dynamic symbol table to pgrelay::api, even for the
# std:: instantiations that libstdc++ marks visible.
add_library(pgrelay_shared SHARED)
target_link_libraries(pgrelay_shared PRIVATE pgrelay_api)
target_include_directories(pgrelay_shared INTERFACE ${PGRELAY_PUBLIC_INCLUDE})
target_link_options(pgrelay_shared PRIVATE -Wl,--version-script=${CMAKE_SOURCE_DIR}/cmake/libpgrelay.map)
# Every symbol resolved at link time, so a missing library fails here, not in
# the user's program. Not under the sanitizers: clang leaves their runtime out
# of shared libraries, to be found in the executable.
if(NOT PGRELAY_SANITIZE AND NOT PGRELAY_FUZZ)
  target_link_options(pgrelay_shared PRIVATE -Wl,--no-undefined)
endif()
set_target_properties(pgrelay_shared PROPERTIES
  OUTPUT_NAME pgrelay
  EXPORT_NAME pgrelay
  VERSION ${PROJECT_VERSION}
  SOVERSION ${PGRELAY_SOVERSION}
  LINK_DEPENDS ${CMAKE_SOURCE_DIR}/cmake/libpgrelay.map)

# libpgrelay.a: every object of the facade and of the internal archives in one
# archive, so a static link needs only it and the system libraries below.
set(PGRELAY_STATIC_OBJECTS $<TARGET_OBJECTS:pgrelay_api>)
foreach(lib ${PGRELAY_INTERNAL_LIBS})
  list(APPEND PGRELAY_STATIC_OBJECTS $<TARGET_OBJECTS:${lib}>)
endforeach()
add_library(pgrelay_static STATIC ${PGRELAY_STATIC_OBJECTS})
target_include_directories(pgrelay_static INTERFACE ${PGRELAY_PUBLIC_INCLUDE})
# By name, not as imported targets: a consumer links them from Debian's -dev
# packages without having to find them first. pgrelay.pc's Libs.private too.
set(PGRELAY_STATIC_SYSTEM_LIBS ${PQXX_LIBRARIES} ${PQ_LIBRARIES} ${NATS_LIBRARIES} ssl crypto)
target_link_libraries(pgrelay_static INTERFACE ${PGRELAY_STATIC_SYSTEM_LIBS} Threads::Threads)
set_target_properties(pgrelay_static PROPERTIES
  OUTPUT_NAME pgrelay
  EXPORT_NAME pgrelay_static)
# The internal `pgrelay` archive would otherwise also be build/libpgrelay.a.
set_target_properties(pgrelay PROPERTIES OUTPUT_NAME pgrelay_internal)
