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
