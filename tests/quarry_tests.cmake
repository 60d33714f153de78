# Helpers for tests: every test sees where the quarry binary, the shared test data and the
# Python oracles are, and exit code 77 means "skipped" (never "passed").
# The HF tokenizer.json files converted from ../shared/testdata (slow: ~2 min) and the oracle's
# expected ids are cached here; scripts/test.sh points the sanitizer build at the Release build's.
set(QUARRY_TOKENIZER_CACHE ${CMAKE_BINARY_DIR}/tokenizer-cache CACHE PATH "cache of converted tokenizers and HF ids")
set(QUARRY_TEST_ENV
    "QUARRY_TOKENIZER_CACHE=${QUARRY_TOKENIZER_CACHE}"
    "QUARRY_CACHE_DIR=${CMAKE_BINARY_DIR}/token-cache"
    "QUARRY_BIN=$<TARGET_FILE:quarry>"
    "QUARRY_TESTDATA=${QUARRY_TESTDATA}"
    "QUARRY_PYTHON=${QUARRY_PYTHON}"
    "QUARRY_SOURCE_DIR=${CMAKE_SOURCE_DIR}"
    "QUARRY_BUILD_DIR=${CMAKE_BINARY_DIR}"
    # One thread per test and passive waiting: ctest runs tests side by side on few cores, and
    # spinning OpenMP threads on an oversubscribed machine slow everything by orders of magnitude.
    "OMP_NUM_THREADS=1"
    "OMP_WAIT_POLICY=PASSIVE")

# quarry_add_test(NAME SOURCES a.c b.c [ARGS ...] [TIMEOUT s] [LABELS l])
function(quarry_add_test name)
  cmake_parse_arguments(T "" "TIMEOUT" "SOURCES;ARGS;LABELS" ${ARGN})
  add_executable(${name} ${T_SOURCES})
  target_compile_options(${name} PRIVATE -Wall -Wextra -Wshadow -Werror)
  target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR}/tests)
  target_link_libraries(${name} PRIVATE libquarry)
  if(QUARRY_HAVE_CUDA)
    set_target_properties(${name} PROPERTIES LINKER_LANGUAGE CUDA)
  endif()
  add_test(NAME ${name} COMMAND ${name} ${T_ARGS} WORKING_DIRECTORY ${CMAKE_BINARY_DIR})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 300)
  endif()
  set_tests_properties(${name} PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT ${T_TIMEOUT}
                       ENVIRONMENT "${QUARRY_TEST_ENV}" LABELS "${T_LABELS}")
endfunction()

# quarry_add_script_test(NAME COMMAND cmd args... [TIMEOUT s]): a shell or Python test.
function(quarry_add_script_test name)
  cmake_parse_arguments(T "" "TIMEOUT" "COMMAND;LABELS" ${ARGN})
  add_test(NAME ${name} COMMAND ${T_COMMAND} WORKING_DIRECTORY ${CMAKE_BINARY_DIR})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 300)
  endif()
  set_tests_properties(${name} PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT ${T_TIMEOUT}
                       ENVIRONMENT "${QUARRY_TEST_ENV}" LABELS "${T_LABELS}")
endfunction()

# quarry_add_fuzzer(NAME SOURCE file.c SECONDS n): a libFuzzer harness, run for n seconds with a
# fixed seed, so that CI runs the same inputs each time (run a harness longer, unseeded, by hand).
function(quarry_add_fuzzer name)
  cmake_parse_arguments(T "" "SOURCE;SECONDS" "CORPUS" ${ARGN})
  if(NOT QUARRY_FUZZ)
    return()
  endif()
  add_executable(${name} ${T_SOURCE})
  target_compile_options(${name} PRIVATE -fsanitize=fuzzer,address,undefined -g)
  target_link_options(${name} PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_libraries(${name} PRIVATE libquarry)
  set(corpus ${CMAKE_BINARY_DIR}/fuzz-corpus/${name})
  file(MAKE_DIRECTORY ${corpus})
  add_test(NAME ${name} COMMAND ${name} -seed=1 -max_total_time=${T_SECONDS} -rss_limit_mb=2048 -timeout=10
           ${corpus} ${T_CORPUS} WORKING_DIRECTORY ${CMAKE_BINARY_DIR})
  math(EXPR limit "${T_SECONDS} + 120")
  set_tests_properties(${name} PROPERTIES TIMEOUT ${limit} ENVIRONMENT "${QUARRY_TEST_ENV}" LABELS fuzz)
endfunction()
