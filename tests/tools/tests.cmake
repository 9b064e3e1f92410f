# Tests of the developer tools that the GPU scripts rely on (they run without a GPU).
find_package(Python3 REQUIRED COMPONENTS Interpreter)
add_test(NAME tools_trace_summary COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/test_trace_summary.py)
