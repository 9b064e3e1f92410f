# The embedded demo model vs transformers, perplexity, the NVFP4 variant, glint run.
add_test(NAME demo_model COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/test_demo.py
  $<TARGET_FILE:glint> ${CMAKE_SOURCE_DIR})
