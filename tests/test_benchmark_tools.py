"""The benchmark helpers: interleaved medians and the generated Markdown record."""
from benchmarks.run import _write_markdown
from benchmarks.timing import interleaved_medians, report


def test_interleaved_medians_rank_a_slower_function_slower():
    import time

    medians = interleaved_medians({"fast": lambda: None, "slow": lambda: time.sleep(0.002)}, rounds=3,
                                  calls_per_round=1, warmup=0)
    assert medians["slow"] > medians["fast"] + 0.001


def test_report_prints_ratios_to_the_baseline(capsys):
    lines = report("title", {"a": 0.002, "b": 0.001}, "b")
    assert lines[0] == "title"
    assert "2.000x b" in lines[1] and "1.000x b" in lines[2]


def test_markdown_record_holds_every_table(tmp_path):
    path = tmp_path / "benchmarks.md"
    _write_markdown(str(path), [["table one", "  row"], ["table two"]])
    text = path.read_text()
    assert text.startswith("# Benchmarks")
    assert "```\ntable one\n  row\n```" in text and "```\ntable two\n```" in text
    assert "llvmlite" in text and "numpy" in text


def test_the_linear_regression_benchmark_runs_and_checks_itself():
    from benchmarks import linreg_epoch

    lines = linreg_epoch.main(["--rounds", "1"])
    assert any(line.strip().startswith("symgrad") for line in lines)
    assert any("numpy floor" in line for line in lines)


def test_summary_has_a_row_per_timed_workload():
    from benchmarks.timing import Table, summary

    tables = [Table(["a"], "step one, 1 thread", {"symgrad": 1.0, "numpy (by hand)": 2.0, "torch eager": 4.0},
                    "torch eager"),
              ["untimed lines"]]
    rows = summary(tables)
    assert rows[2] == "| step one | 1000.000 ms | 0.25x | 0.50x |" and len(rows) == 3
    tables[0].medians["symgrad.compile"] = 0.5
    rows = summary(tables)
    assert rows[3] == "| step one, symgrad.compile | 500.000 ms | 0.12x | 0.25x |" and len(rows) == 4
