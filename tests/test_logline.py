"""Log lines as files show them: 80 columns under any prefix, secrets masked, URLs whole."""

from __future__ import annotations

from fishopt.logline import log_lines


def test_every_line_fits_80_columns_under_its_prefix_and_keeps_its_words() -> None:
    message = "warning: " + " ".join(f"word{i}" for i in range(40)) + "\n  second line"
    lines = log_lines(message, "w1 [host:123] ")
    assert all(line.startswith("w1 [host:123] ") for line in lines)
    assert all(len(line) <= 80 for line in lines), lines
    assert lines[1].startswith("w1 [host:123]   word")  # a continuation is indented
    assert lines[-1] == "w1 [host:123]   second line"  # lines the message made are kept
    words = " ".join(line.removeprefix("w1 [host:123] ") for line in lines).split()
    assert words == message.split()


def test_a_long_url_stays_whole_and_its_password_is_masked() -> None:
    url = "postgresql+psycopg://fishopt:s3cret-pw@db.example.org:5432/" + "x" * 80
    lines = log_lines(f"joined study 'full' in {url}:", storage=url)
    assert "s3cret-pw" not in "\n".join(lines)
    assert any("db.example.org:5432/" + "x" * 80 in line for line in lines)
