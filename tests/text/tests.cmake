# Tokenizer tests (src/text/tokenizer*). Fixtures: tests/fixtures/tokenizer/<name>/ with
# tokenizer.json (or tokenizer.tar.xz, unpacked here into the build tree) and reference.json
# made by tools/tokenizer/make_references.py with Hugging Face tokenizers.
set(GLINT_TOK_FIXTURES ${GLINT_FIXTURES}/tokenizer)
set(GLINT_TOK_UNPACKED ${CMAKE_CURRENT_BINARY_DIR}/tokenizer-fixtures)

add_executable(test_tokenizer_parity ${CMAKE_CURRENT_LIST_DIR}/test_tokenizer_parity.c)
target_link_libraries(test_tokenizer_parity PRIVATE glintcore)

file(GLOB GLINT_TOK_FIXTURE_DIRS LIST_DIRECTORIES true ${GLINT_TOK_FIXTURES}/*)
foreach(dir ${GLINT_TOK_FIXTURE_DIRS})
  if(NOT IS_DIRECTORY ${dir} OR NOT EXISTS ${dir}/reference.json)  # cli/ holds CLI test files
    continue()
  endif()
  get_filename_component(name ${dir} NAME)
  set(json ${dir}/tokenizer.json)
  if(EXISTS ${dir}/tokenizer.tar.xz)
    set(json ${GLINT_TOK_UNPACKED}/${name}/tokenizer.json)
    if(NOT EXISTS ${json} OR ${dir}/tokenizer.tar.xz IS_NEWER_THAN ${json})
      file(ARCHIVE_EXTRACT INPUT ${dir}/tokenizer.tar.xz DESTINATION ${GLINT_TOK_UNPACKED}/${name})
    endif()
  endif()
  add_test(NAME tokenizer_parity_${name} COMMAND test_tokenizer_parity ${json} ${dir}/reference.json)
endforeach()

add_test(NAME tokenizer_cli COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/cli_test.sh $<TARGET_FILE:glint> ${GLINT_TOK_FIXTURES})

add_executable(test_tokenizer_api ${CMAKE_CURRENT_LIST_DIR}/test_tokenizer_api.c)
target_link_libraries(test_tokenizer_api PRIVATE glintcore)
file(MAKE_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR}/tokenizer-scratch)
add_test(NAME tokenizer_api COMMAND test_tokenizer_api ${GLINT_TOK_FIXTURES} ${CMAKE_CURRENT_BINARY_DIR}/tokenizer-scratch)

# Benchmark driver for tools/tokenizer/bench.py (built, not run by ctest).
add_executable(tokenizer_bench ${CMAKE_CURRENT_LIST_DIR}/tokenizer_bench.c)
target_link_libraries(tokenizer_bench PRIVATE glintcore)
