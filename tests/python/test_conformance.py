"""The ONNX node conformance suite through `kiln conformance`, held to a checked-in list.

`tests/conformance/expected-failures.txt` names every case expected not to pass, one per line:
`case_name  reason`. This test fails when a case outside the list does not pass (a
regression), and when a listed case passes (so the list only shrinks: remove the line).
`--update` rewrites the list from the current results, keeping existing reasons.
Prints `conformance-suite: N passed, M failed` where failures are list violations.
"""

import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

LIST = os.path.join(common.ROOT, "tests", "conformance", "expected-failures.txt")


def read_list():
    expected = {}
    if os.path.exists(LIST):
        for line in open(LIST):
            line = line.strip()
            if line and not line.startswith("#"):
                name, _, reason = line.partition(" ")
                expected[name] = reason.strip()
    return expected


def main():
    common.kiln_bin()
    common.ensure_data()
    suite = os.path.join(common.CACHE, "conformance", "node")
    r = subprocess.run([common.kiln_bin(), "conformance", suite, "--json"],
                       capture_output=True, text=True, timeout=3000)
    if r.returncode != 0:
        print(f"kiln conformance failed: {r.stderr[-2000:]}")
        print("conformance-suite: 0 passed, 1 failed")
        sys.exit(1)
    report = json.loads(r.stdout)
    expected = read_list()
    cases = report["cases"]
    if "--update" in sys.argv:
        with open(LIST, "w") as f:
            f.write("# ONNX node conformance cases kiln is expected not to pass: `case  reason`.\n"
                    "# Checked by tests/python/test_conformance.py; remove a line when its case passes.\n")
            for c in cases:
                if c["status"] != "pass":
                    reason = expected.get(c["name"]) or f"{c['status']}: {c['detail']}".splitlines()[0][:200]
                    f.write(f"{c['name']} {reason}\n")
        print(f"wrote {LIST}")
    expected = read_list()
    problems = []
    names = {c["name"] for c in cases}
    for c in cases:
        listed = c["name"] in expected
        if c["status"] != "pass" and not listed:
            problems.append(f"REGRESSION {c['name']}: {c['status']}: {c['detail']}")
        if c["status"] == "pass" and listed:
            problems.append(f"NOW PASSES {c['name']}: remove it from tests/conformance/expected-failures.txt")
    for name in expected:
        if name not in names:
            problems.append(f"UNKNOWN {name}: listed but not in the suite")
    for p in problems:
        print(p)
    print(f"kiln conformance: {report['passed']} pass, {report['failed']} fail, "
          f"{report['errored']} error, {report['unsupported']} unsupported of {len(cases)} cases; "
          f"{len(expected)} listed as expected failures")
    print(f"conformance-suite: {len(cases) - len(problems)} passed, {len(problems)} failed")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
