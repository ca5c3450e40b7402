# run_embed.cmake - runs the embedding example for ctest and checks both
# its exit status and the lines that show it did what it documents
# (PASS_REGULAR_EXPRESSION alone would ignore the exit status).
#
#   cmake -DEXE=embed_example [-DMODE=both|host-loop|cut]
#         [-DVALGRIND=valgrind -DSUPP=tests/valgrind.supp] -P run_embed.cmake
#
# MODE both: phase 1 then phase 2; host-loop: phase 2 only; cut: at most
# 3 frames per phase, so sl_close has to cancel the tasks still running.
if(NOT MODE)
  set(MODE both)
endif()
set(args)
if(MODE STREQUAL "host-loop")
  set(args --host-loop)
elseif(MODE STREQUAL "cut")
  set(args --frames 3)
endif()
set(launcher)
if(VALGRIND)
  set(launcher ${VALGRIND} -q --leak-check=full --errors-for-leak-kinds=definite,indirect
      --error-exitcode=1)
  if(SUPP)
    list(APPEND launcher --suppressions=${SUPP})
  endif()
endif()

execute_process(COMMAND ${launcher} ${EXE} ${args}
  OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
message("${out}")
if(err)
  message("stderr:\n${err}")
endif()
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "embed_example ${args} exited with ${rc}")
endif()
# Script errors go to the host's callback, never to stderr.
if(err AND NOT VALGRIND)
  message(FATAL_ERROR "unexpected output on stderr")
endif()

set(expect "embed example: ok")
if(MODE STREQUAL "cut")
  list(APPEND expect "phase 1: finished after 3 frames" "phase 2: finished after 3 frames")
else()
  set(phases 2)
  if(MODE STREQUAL "both")
    set(phases 1 2)
  endif()
  foreach(p ${phases})
    list(APPEND expect "phase ${p}: the .* loop"
      "phase ${p}: finished after [0-9]+ frames: 1 error reported, status 1, 0 tasks left")
  endforeach()
  list(APPEND expect
    "frame +[0-9]+: [0-9]+ tasks?\n"
    "host: script error #1: sluice: enemy:4: attempt to index local 'target'"
    "walker: step 3 at frame"
    "loaders: all done at frame [0-9]+, 600 bytes"
    "on_event\\(\"door opened\"\\) handled at frame")
endif()
foreach(re ${expect})
  if(NOT out MATCHES "${re}")
    message(FATAL_ERROR "expected a line matching: ${re}")
  endif()
endforeach()
