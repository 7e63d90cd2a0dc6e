"""Regenerate the config reference in README.md from the schema (tests/test_docs.py checks it)."""

from pathlib import Path

from simulator.config import config_reference

readme = Path(__file__).parents[1] / "README.md"
text = readme.read_text()
start = text.index("**`[experiment]`**")
end = text.index("\n## ", start)
readme.write_text(text[:start] + config_reference().strip() + "\n" + text[end:])
print("README config reference updated")
