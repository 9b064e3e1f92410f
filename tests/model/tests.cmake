# Model tests: forward pass vs the transformers fixtures, loader errors, CLI.
set(GLINT_MODELS ${GLINT_FIXTURES}/models)
glint_c_test(model_forward ${CMAKE_CURRENT_LIST_DIR}/test_forward.c
  ${GLINT_MODELS}/tiny-fsf-f32 ${GLINT_MODELS}/tiny-group-bf16
  ${GLINT_MODELS}/tiny-nonorm-yarn-sharded ${GLINT_MODELS}/tiny-allf-override)
# The same model in every quantized layout vs transformers on its dequantized weights.
set(GLINT_QUANT ${GLINT_FIXTURES}/quant)
add_test(NAME model_forward_quantized COMMAND model_forward
  ${GLINT_QUANT}/q-base-f32 ${GLINT_QUANT}/q-nvfp4-modelopt-experts ${GLINT_QUANT}/q-nvfp4-modelopt-all
  ${GLINT_QUANT}/q-nvfp4-ct ${GLINT_QUANT}/q-fp8-block ${GLINT_QUANT}/q-gptq)
find_package(Python3 REQUIRED COMPONENTS Interpreter)
add_test(NAME model_cli COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/test_cli.py
  $<TARGET_FILE:glint> ${GLINT_MODELS})
glint_c_test(cpu_kernels ${CMAKE_CURRENT_LIST_DIR}/test_ops.c)
add_test(NAME quantize_and_quant_errors COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/test_quant.py
  $<TARGET_FILE:glint> ${GLINT_QUANT} ${GLINT_MODELS})
# Tensor parallelism on the CPU (each rank a thread with a backend of its own) vs the same oracles.
# The FP8-block and GPTQ fixtures are too small to cut at their block edges (test_tp covers those
# formats' cuts); NVFP4 cuts need 16 columns per rank, so 4 ranks take only the float models.
add_test(NAME model_forward_tp2 COMMAND model_forward
  ${GLINT_MODELS}/tiny-fsf-f32 ${GLINT_MODELS}/tiny-group-bf16 ${GLINT_MODELS}/tiny-nonorm-yarn-sharded
  ${GLINT_MODELS}/tiny-allf-override ${GLINT_QUANT}/q-base-f32 ${GLINT_QUANT}/q-nvfp4-modelopt-experts
  ${GLINT_QUANT}/q-nvfp4-modelopt-all ${GLINT_QUANT}/q-nvfp4-ct)
set_tests_properties(model_forward_tp2 PROPERTIES ENVIRONMENT "GLINT_TEST_TP=2")
add_test(NAME model_forward_tp4 COMMAND model_forward
  ${GLINT_MODELS}/tiny-fsf-f32 ${GLINT_MODELS}/tiny-group-bf16 ${GLINT_MODELS}/tiny-nonorm-yarn-sharded
  ${GLINT_MODELS}/tiny-allf-override ${GLINT_QUANT}/q-base-f32)
set_tests_properties(model_forward_tp4 PROPERTIES ENVIRONMENT "GLINT_TEST_TP=4")
glint_c_test(test_tp ${CMAKE_CURRENT_LIST_DIR}/test_tp.c ${GLINT_MODELS}/tiny-fsf-f32 ${GLINT_MODELS}/tiny-group-bf16
  ${CMAKE_SOURCE_DIR}/models/demo ${CMAKE_SOURCE_DIR}/models/demo-nvfp4)
# The model's use of the backend's side lines (branch / join): joins before what reads them.
glint_c_test(test_branch ${CMAKE_CURRENT_LIST_DIR}/test_branch.c ${GLINT_MODELS}/tiny-fsf-f32
  ${GLINT_QUANT}/q-nvfp4-modelopt-experts ${CMAKE_SOURCE_DIR}/models/demo)
