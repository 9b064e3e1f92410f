# The embedded demo model vs transformers, perplexity, the NVFP4 variant, glint run.
add_test(NAME demo_model COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/test_demo.py
  $<TARGET_FILE:glint> ${CMAKE_SOURCE_DIR})
glint_c_test(demo_mtp ${CMAKE_CURRENT_LIST_DIR}/test_mtp.c ${CMAKE_SOURCE_DIR}/models/demo ${GLINT_FIXTURES}/demo)
glint_c_test(demo_spec_engine ${CMAKE_CURRENT_LIST_DIR}/test_spec_engine.c ${CMAKE_SOURCE_DIR}/models/demo ${GLINT_FIXTURES}/demo)
add_test(NAME demo_spec_engine_nvfp4 COMMAND demo_spec_engine ${CMAKE_SOURCE_DIR}/models/demo-nvfp4 ${GLINT_FIXTURES}/demo)
add_test(NAME demo_spec_engine_tp2 COMMAND demo_spec_engine ${CMAKE_SOURCE_DIR}/models/demo ${GLINT_FIXTURES}/demo)
set_tests_properties(demo_spec_engine_tp2 PROPERTIES ENVIRONMENT "GLINT_TEST_TP=2")
