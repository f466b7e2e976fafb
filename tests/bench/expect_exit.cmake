# Runs a command and checks how it ends: its exit code, that stderr is exactly one line
# matching STDERR_REGEX (when given), and that stdout matches STDOUT_REGEX (when given).
#   cmake -DCMD="prog|arg1|arg2" -DCODE=2 [-DSTDERR_REGEX=...] [-DSTDOUT_REGEX=...] -P expect_exit.cmake
# Arguments are separated by "|" (a CMake list cannot cross -D intact).
string(REPLACE "|" ";" cmd "${CMD}")
execute_process(COMMAND ${cmd} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err
                TIMEOUT 600)
string(STRIP "${err}" err_stripped)
string(FIND "${err_stripped}" "\n" newline)
set(problems "")
if(NOT rc STREQUAL CODE)
  string(APPEND problems "exit code ${rc}, expected ${CODE}; ")
endif()
if(DEFINED STDERR_REGEX)
  if(NOT newline EQUAL -1)
    string(APPEND problems "stderr has more than one line; ")
  endif()
  if(NOT err_stripped MATCHES "${STDERR_REGEX}")
    string(APPEND problems "stderr does not match '${STDERR_REGEX}'; ")
  endif()
endif()
if(DEFINED STDOUT_REGEX AND NOT out MATCHES "${STDOUT_REGEX}")
  string(APPEND problems "stdout does not match '${STDOUT_REGEX}'; ")
endif()
if(problems)
  message(FATAL_ERROR "${problems}\n--- stdout:\n${out}\n--- stderr:\n${err}")
endif()
message(STATUS "ok: exit ${rc}; stderr: ${err_stripped}")
