"""Read the evaluator's JSON: the keys are stable and documented in the README."""

import json
import sys

result = json.load(open(sys.argv[1]))
print(json.dumps({k: result[k] for k in list(result)[:12] if not isinstance(result[k], (list, dict))}, indent=1))
