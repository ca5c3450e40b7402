# Tests run by ctest (included by CMakeLists.txt).
#
# specs: the busted specs under spec/, run inside the sluice binary on the
# virtual clock by spec/runner.lua (every `it` is a task, checked for leaks).
add_test(NAME specs
  COMMAND ${CMAKE_BINARY_DIR}/sluice --virtual-time ${CMAKE_SOURCE_DIR}/spec/runner.lua ${CMAKE_SOURCE_DIR}/spec
  WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
# Under the sanitizers everything runs several times slower: the
# randomized property specs then run 1,000 seeded schedules each instead
# of 10,000 (the normal build runs them all).
if(SLUICE_SANITIZE)
  set(SLUICE_SPEC_ENV "SLUICE_BIN=${CMAKE_BINARY_DIR}/sluice;SLUICE_PROPERTY_SCHEDULES=1000")
else()
  set(SLUICE_SPEC_ENV "SLUICE_BIN=${CMAKE_BINARY_DIR}/sluice")
endif()
set_tests_properties(specs PROPERTIES ENVIRONMENT "${SLUICE_SPEC_ENV}" TIMEOUT 600)

# C unit tests and the embedding example's test.
include(${CMAKE_SOURCE_DIR}/cmake/tests_c.cmake OPTIONAL)
