"""``python -m fastmlp bench --quick``: the machinery runs and prints a well-formed table.

Timings are not checked (they are meaningless at the quick sizes); the shape
of the table, the machine line and the entry points are.
"""

import pytest

from fastmlp import _bench
from fastmlp.__main__ import main as cli_main

# two fits, one-row predict of each model, predict_proba, peak memory, the lbfgs fit and
# its peak memory (quick skips startup)
N_ROWS = 12  # 8 dense and lbfgs rows, 3 sparse (fit, predict_proba, memory), 1 mid-size predict


def _table_rows(text):
    lines = [line for line in text.splitlines() if line.startswith("|")]
    header, rule, body = lines[0], lines[1], lines[2:]
    return header, rule, body


def _cells(line):
    return [c.strip() for c in line.strip().strip("|").split("|")]


@pytest.fixture(scope="module")
def quick_output():
    rows, machine = _bench.run_cases(quick=True, repeat=1, torch=False, startup=False)
    return rows, machine, _bench.format_table(rows, machine)


def test_quick_table_shape(quick_output):
    rows, machine, text = quick_output
    assert len(rows) == N_ROWS
    header, rule, body = _table_rows(text)
    assert _cells(header) == _bench.COLUMNS
    assert len(_cells(rule)) == len(_bench.COLUMNS)
    assert len(body) == N_ROWS
    for line in body:
        cells = _cells(line)
        assert len(cells) == len(_bench.COLUMNS)
        assert cells[1] != "—"  # fastmlp is measured in every case
        assert cells[3] == "—"  # PyTorch was left out
    # fits and predictions have a scikit-learn time and a ratio to it
    for line in body[:5] + body[6:7]:
        cells = _cells(line)
        assert cells[2].endswith((" s", " ms", " µs"))
        assert cells[5].endswith("x")
    assert "lbfgs" in body[6] and "lbfgs" in body[7]
    assert "CSR" in body[8] and "CSR" in body[9] and "sparse fit" in body[10]
    assert "100 rows" in body[11]
    for line in body[8:10] + body[11:]:
        assert _cells(line)[5].endswith("x")


def test_cases_pick_the_rows(capsys):
    assert _bench.main(["--quick", "--no-torch", "--cases", "sparse,mid"]) == 0
    body = _table_rows(capsys.readouterr().out)[2]
    assert len(body) == 4 and "CSR" in body[0] and "100 rows" in body[3]
    with pytest.raises(SystemExit):
        _bench.main(["--quick", "--cases", "nope"])


def test_quick_names_the_machine(quick_output):
    rows, machine, text = quick_output
    for key in ("platform", "cpu", "cores", "numpy", "numba", "blas", "fastmlp kernels' GEMMs"):
        assert machine[key]
    assert text.startswith("Machine: ")


def test_quick_values_are_positive(quick_output):
    rows, _, _ = quick_output
    for r in rows:
        assert r["fastmlp"] > 0
        assert r["scikit-learn"] > 0
        assert r["PyTorch"] is None


def test_main_quick_prints_and_writes(tmp_path, capsys):
    out = tmp_path / "table.md"
    assert _bench.main(["--quick", "--no-torch", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    header, _, body = _table_rows(printed)
    assert _cells(header) == _bench.COLUMNS
    assert len(body) == N_ROWS
    assert out.read_text().strip() == printed.strip()


def test_cli_dispatches_bench(capsys):
    # (the fresh-process rows are timed by test_main_quick_prints_and_writes)
    assert cli_main(["bench", "--quick", "--no-torch", "--no-startup", "--repeat", "1"]) == 0
    assert "| case |" in capsys.readouterr().out


def test_bad_repeat_is_refused():
    with pytest.raises(SystemExit):
        _bench.main(["--quick", "--repeat", "0"])


def test_cpu_scaling_script_quick(capsys):
    """benchmarks/cpu_scaling.py runs each contender in a thread-limited process and prints
    one row per (case, contender) with a time and a speed-up for every thread count."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "cpu_scaling.py"
    spec = importlib.util.spec_from_file_location("cpu_scaling", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.thread_counts(1) == [1]
    assert mod.thread_counts(6) == [1, 2, 4, 6]
    assert mod.main(["--quick", "--threads", "1", "2", "--cases", "small", "--no-torch"]) == 0
    out = capsys.readouterr().out
    rows = [r for r in out.splitlines() if r.startswith("| small |")]
    assert [r.split("|")[2].strip() for r in rows] == ["fastmlp", "scikit-learn"]
    for r in rows:
        cells = [c.strip() for c in r.strip("|").split("|")[2:]]
        assert len(cells) == 2 and cells[0].endswith("(1.00x)")
        assert all(float(c.split(" s")[0]) > 0 for c in cells)


def test_cpu_parts_script_quick(capsys):
    """benchmarks/cpu_parts.py fits with the parts forced (1, 2, 4, 8) on 1 and 2 threads
    and prints each time with its ratio to 2 parts on as many threads."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "cpu_parts.py"
    spec = importlib.util.spec_from_file_location("cpu_parts", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--quick"]) == 0
    rows = [r for r in capsys.readouterr().out.splitlines() if r.startswith("| 20 ->")]
    assert [r.split("|")[2].strip() for r in rows] == ["1", "2", "4", "8"]
    two = rows[1].strip("|").split("|")
    assert two[3].strip().endswith("(1.00x)") and two[4].strip().endswith("(1.00x)")
    assert rows[0].strip("|").split("|")[4].strip() == "—"  # 2 threads on 1 part: not run
