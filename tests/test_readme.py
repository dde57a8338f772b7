"""README's code examples run and print what README says they print."""

import contextlib
import importlib.util
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_examples_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks
    namespace = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for block in blocks:
            if "import dask" in block and importlib.util.find_spec("dask") is None:
                continue            # the optional extra is not installed here
            exec(compile(block, str(README), "exec"), namespace)
    # The seed example: input, weight and output shapes.
    assert "(1, 1, 4, 4) (1, 1, 3, 3) (1, 1, 2, 2)" in out.getvalue()
    assert namespace["y"].shape == (1, 8, 2, 2)
