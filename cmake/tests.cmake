# Tests run by ctest (included by CMakeLists.txt).
#
# specs: the busted specs under spec/, run inside the sluice binary on the
# virtual clock by spec/runner.lua (every `it` is a task, checked for leaks).
add_test(NAME specs
  COMMAND ${CMAKE_BINARY_DIR}/sluice --virtual-time ${CMAKE_SOURCE_DIR}/spec/runner.lua ${CMAKE_SOURCE_DIR}/spec
  WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
set_tests_properties(specs PROPERTIES
  ENVIRONMENT "SLUICE_BIN=${CMAKE_BINARY_DIR}/sluice"
  TIMEOUT 300)

# C unit tests and the embedding example's test.
include(${CMAKE_SOURCE_DIR}/cmake/tests_c.cmake OPTIONAL)
