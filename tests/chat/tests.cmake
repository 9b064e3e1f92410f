# Chat templates: goldens from tools/chat/make_goldens.py (jinja2 3.1.6 configured like transformers).
glint_c_test(test_chat_goldens ${CMAKE_CURRENT_SOURCE_DIR}/chat/test_chat_goldens.c ${GLINT_FIXTURES}/chat)
find_package(Threads REQUIRED)
target_link_libraries(test_chat_goldens PRIVATE Threads::Threads)
glint_c_test(test_jinja_errors ${CMAKE_CURRENT_SOURCE_DIR}/chat/test_jinja_errors.c
             ${GLINT_FIXTURES}/chat/templates/glm-4.7.jinja ${GLINT_FIXTURES}/chat/templates/qwen3.jinja
             ${GLINT_FIXTURES}/chat/templates/llama3.jinja ${GLINT_FIXTURES}/chat/templates/deepseek_v3.jinja
             ${GLINT_FIXTURES}/chat/unit/macros.jinja)
add_test(NAME test_render_chat_cli
         COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/chat/test_render_chat_cli.sh $<TARGET_FILE:glint> ${GLINT_FIXTURES}/chat)
