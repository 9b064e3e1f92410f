# glint serve: parser unit tests, then end-to-end tests against a running server on 127.0.0.1
# (openai SDK installed into a venv by setup_fixtures.py; pip failing fails the tests).
glint_c_test(test_server_parsers ${CMAKE_CURRENT_LIST_DIR}/test_parsers.c)
# The sampler against the whole-vocabulary sort it replaced, and drawn frequencies against sglang's rules.
glint_c_test(test_sampler ${CMAKE_CURRENT_LIST_DIR}/test_sampler.c)

find_package(Python3 REQUIRED COMPONENTS Interpreter)
set(GLINT_SERVER_FIXTURES ${CMAKE_CURRENT_BINARY_DIR}/server-fixtures)
set(GLINT_SERVER_PY ${GLINT_SERVER_FIXTURES}/venv/bin/python)
add_test(NAME server_setup
         COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/setup_fixtures.py $<TARGET_FILE:glint>
                 ${PROJECT_SOURCE_DIR} ${GLINT_SERVER_FIXTURES})
set_tests_properties(server_setup PROPERTIES FIXTURES_SETUP glint_server TIMEOUT 600)
foreach(name api load abuse)
  add_test(NAME server_${name} COMMAND ${GLINT_SERVER_PY} ${CMAKE_CURRENT_LIST_DIR}/test_${name}.py $<TARGET_FILE:glint>)
  set_tests_properties(server_${name} PROPERTIES FIXTURES_REQUIRED glint_server TIMEOUT 900 RUN_SERIAL TRUE
                       ENVIRONMENT "GLINT_SERVER_FIXTURES=${GLINT_SERVER_FIXTURES};PYTHONPATH=${CMAKE_CURRENT_LIST_DIR}")
endforeach()

# Engine (scheduler, page pool, prefix cache) on the tiny random model.
glint_c_test(test_scheduler ${CMAKE_CURRENT_LIST_DIR}/test_scheduler.c ${GLINT_SERVER_FIXTURES}/model-random)
set_tests_properties(test_scheduler PROPERTIES FIXTURES_REQUIRED glint_server)

# The trained demo model (models/demo) behind the server: real reasoning and tool calls.
add_test(NAME server_demo_model COMMAND ${GLINT_SERVER_PY} ${CMAKE_CURRENT_LIST_DIR}/test_demo_model.py
         $<TARGET_FILE:glint> ${PROJECT_SOURCE_DIR})
set_tests_properties(server_demo_model PROPERTIES FIXTURES_REQUIRED glint_server TIMEOUT 900 RUN_SERIAL TRUE
                     ENVIRONMENT "GLINT_SERVER_FIXTURES=${GLINT_SERVER_FIXTURES};PYTHONPATH=${CMAKE_CURRENT_LIST_DIR}")
add_test(NAME test_scheduler_tp2 COMMAND test_scheduler ${GLINT_SERVER_FIXTURES}/model-random)
set_tests_properties(test_scheduler_tp2 PROPERTIES FIXTURES_REQUIRED glint_server ENVIRONMENT "GLINT_TEST_TP=2")
