"""Prepares the server tests: a virtual environment with the openai SDK (pip must work: a test that
cannot install its client fails, it does not skip), a tiny random model and a scripted model.

usage: setup_fixtures.py GLINT REPO_ROOT FIXTURE_DIR
"""
import os
import subprocess
import sys

glint, root, out = sys.argv[1:4]
os.makedirs(out, exist_ok=True)
venv = os.path.join(out, "venv")
py = os.path.join(venv, "bin", "python")
if subprocess.run([py, "-c", "import openai"], capture_output=True).returncode if os.path.exists(py) else True:
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    r = subprocess.run([py, "-m", "pip", "install", "--disable-pip-version-check", "-q", "openai"])
    if r.returncode:
        sys.exit("FAIL: could not pip install the openai SDK into %s; the server tests need it" % venv)
subprocess.run([py, "-c", "import openai; print('openai', openai.__version__)"], check=True)

maker = os.path.join(root, "tools", "server", "make_test_model.py")
random_dir = os.path.join(out, "model-random")
subprocess.run([sys.executable, maker, root, random_dir], check=True)

# The scripted model answers a GLM prompt (ending in <think>) with a reasoning sentence and one
# glm47 tool call; with thinking off (prompt ending in </think>) with the tool call alone.
tok = os.path.join(root, "tests", "fixtures", "tokenizer", "glm5-style", "tokenizer.json")


def ids(text):
    r = subprocess.run([glint, "tokenize", "--tokenizer", tok], input=text.encode(), capture_output=True, check=True)
    return r.stdout.decode().split()


def special(name):
    return ids(name)[0]


chain = ([special("<think>")] + ids("I will look it up.") + [special("</think>"), special("<tool_call>")] +
         ids("get_weather") + [special("<arg_key>")] + ids("city") + [special("</arg_key>"), special("<arg_value>")] +
         ids("Paris") + [special("</arg_value>"), special("</tool_call>"), special("<|observation|>")])
subprocess.run([sys.executable, maker, root, os.path.join(out, "model-script"), "--chain", " ".join(chain)], check=True)
print("fixtures ready in", out)
