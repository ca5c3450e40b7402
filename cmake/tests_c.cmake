# tests_c.cmake - ctest registration of the C unit tests and of the
# embedding example, included from cmake/tests.cmake.
#
#   test_timer, test_queue   unit tests of lib/'s pure C parts
#   test_close               sl_close with tasks, handles and requests in flight
#   test_copy                lib/sl_copy.c: values copied between Lua states
#   embed_*                  examples/embed run and checked by a script
#   *_valgrind               some of these and the CLI under valgrind, when it
#                            is installed (not in sanitizer builds: the two
#                            do not mix)

add_test(NAME test_timer COMMAND test_timer)
add_test(NAME test_queue COMMAND test_queue)
add_test(NAME test_close COMMAND test_close)
add_test(NAME test_copy COMMAND test_copy)
set_tests_properties(test_close PROPERTIES TIMEOUT 60)

foreach(src ${SLUICE_PRIM_TESTS})
  get_filename_component(name ${src} NAME_WE)
  add_test(NAME ${name} COMMAND ${name})
  set_tests_properties(${name} PROPERTIES TIMEOUT 120)
endforeach()

set(SL_RUN_EMBED ${CMAKE_SOURCE_DIR}/tests/run_embed.cmake)
foreach(mode both host-loop cut)
  set(name embed_example)
  if(NOT mode STREQUAL "both")
    set(name embed_${mode})
    string(REPLACE "-" "_" name ${name})
  endif()
  add_test(NAME ${name} COMMAND ${CMAKE_COMMAND} -DEXE=$<TARGET_FILE:embed_example>
    -DMODE=${mode} -P ${SL_RUN_EMBED})
  set_tests_properties(${name} PROPERTIES TIMEOUT 60)
endforeach()

find_program(VALGRIND valgrind)
if(VALGRIND AND NOT SLUICE_SANITIZE)
  set(SL_VALGRIND_SUPP ${CMAKE_SOURCE_DIR}/tests/valgrind.supp)
  add_test(NAME embed_valgrind COMMAND ${CMAKE_COMMAND} -DEXE=$<TARGET_FILE:embed_example>
    -DVALGRIND=${VALGRIND} -DSUPP=${SL_VALGRIND_SUPP} -P ${SL_RUN_EMBED})
  # Cut short: sl_close cancels running tasks and closes their timers.
  add_test(NAME embed_cut_valgrind COMMAND ${CMAKE_COMMAND} -DEXE=$<TARGET_FILE:embed_example>
    -DMODE=cut -DVALGRIND=${VALGRIND} -DSUPP=${SL_VALGRIND_SUPP} -P ${SL_RUN_EMBED})
  add_test(NAME test_close_valgrind COMMAND ${VALGRIND} -q --leak-check=full
    --errors-for-leak-kinds=definite,indirect --error-exitcode=1
    --suppressions=${SL_VALGRIND_SUPP} $<TARGET_FILE:test_close>)
  # The command line host's shutdown, with a task still sleeping at exit.
  add_test(NAME cli_valgrind COMMAND ${VALGRIND} -q --leak-check=full
    --errors-for-leak-kinds=definite,indirect --error-exitcode=1
    --suppressions=${SL_VALGRIND_SUPP} $<TARGET_FILE:sluice>
    -e "local s = require 'sluice' s.spawn(function() s.sleep(0.01) end) s.sleep(0.02)")
  set_tests_properties(embed_valgrind embed_cut_valgrind test_close_valgrind cli_valgrind
    PROPERTIES TIMEOUT 300)
endif()

# Sanitizer builds (make test-asan): the environment of every test, the
# specs included, set once the whole project has defined its tests; a test
# that sets one of these variables itself keeps its own.
#   ASAN_OPTIONS   detect_leaks=1.  LuaJIT needs nothing special under ASan:
#                  it is GC64 on x86-64, so lua_newstate takes sl_alloc and
#                  ASan sees the whole Lua heap, and JIT-compiled code lives
#                  in LuaJIT's own mmap'ed area, which ASan leaves alone.
#                  Do not set fast_unwind_on_malloc=0: the slow unwinder
#                  cannot get through JIT-compiled frames and hangs.
#   LSAN_OPTIONS   tests/lsan.supp: a process that exits without closing its
#                  runtime (os.exit, the spec runner after a failure) keeps
#                  its Lua heap, and LeakSanitizer reports some blocks of
#                  the JIT compiler in it as leaks: it cannot follow the
#                  pointers LuaJIT keeps to them.
#   UBSAN_OPTIONS  a stack trace for every report (they are fatal anyway).
function(sl_sanitizer_environment)
  set(vars
    "ASAN_OPTIONS=detect_leaks=1"
    "LSAN_OPTIONS=suppressions=${CMAKE_SOURCE_DIR}/tests/lsan.supp:print_suppressions=0"
    "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1")
  get_property(tests DIRECTORY ${CMAKE_SOURCE_DIR} PROPERTY TESTS)
  foreach(t IN LISTS tests)
    get_test_property(${t} ENVIRONMENT env)
    foreach(v IN LISTS vars)
      string(REGEX REPLACE "=.*" "" name "${v}")
      if(NOT env MATCHES "(^|;)${name}=")
        set_property(TEST ${t} APPEND PROPERTY ENVIRONMENT "${v}")
      endif()
    endforeach()
  endforeach()
endfunction()
if(SLUICE_SANITIZE)
  if(CMAKE_VERSION VERSION_LESS 3.19)
    sl_sanitizer_environment()   # no deferred calls: the tests defined so far
  else()
    cmake_language(DEFER DIRECTORY ${CMAKE_SOURCE_DIR} CALL sl_sanitizer_environment)
  endif()
endif()
