"""Print the pip requirements of conda env files, one per line (used by the Makefile).

    python envs/pip_requirements.py envs/data.yaml envs/workflow.yaml > requirements.txt
"""

import sys

import yaml

for path in sys.argv[1:]:
    with open(path, encoding="utf-8") as fh:
        env = yaml.safe_load(fh)
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            for req in dep.get("pip", []):
                print(req)
