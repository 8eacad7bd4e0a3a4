"""bench/memory.py's dry run (--tiny): every setting runs in its own process and reports a peak and times."""
import json

from bench import memory


def test_tiny_dry_run_reports_every_setting(tmp_path, capsys):
    out = tmp_path / "m.json"
    assert memory.main(["--tiny", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert list(res["settings"]) == ["full-logits", "chunked", "chunked+checkpoint"]
    for r in res["settings"].values():
        assert r["peak"] >= r["base"] > 0 and r["t_update"] > 0 and r["t_fwd"] > 0 and r["response_len"] >= 1
    table = capsys.readouterr().out
    assert "| chunked+checkpoint |" in table and "vs full-logits" in table


def test_bad_flags_are_one_line(capsys):
    assert memory.main(["--tiny", "--settings", "chunked,fast"]) == 2
    assert memory.main(["--tiny", "--micro-batch", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "--settings" in err[0] and "--micro-batch (micro_batch)" in err[1]
