"""Every analysis notebook runs headless (nbclient) on a small sweep's results, stored clean."""
from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from test_figures import make_results

ANALYSIS = Path(__file__).resolve().parents[1] / "analysis"
NOTEBOOKS = ("vct_beta", "coupling", "gc_mu", "guide_ladder", "explore")


@pytest.fixture(scope="module")
def results_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sweep") / "results.parquet"
    make_results(failures=True).to_parquet(path)
    return path


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_stored_without_outputs(name):
    book = nbformat.read(ANALYSIS / f"{name}.ipynb", as_version=4)
    nbformat.validate(book)
    code = [cell for cell in book.cells if cell.cell_type == "code"]
    assert all(not cell.outputs and cell.execution_count is None for cell in code)
    assert "ABLATE_RESULTS" in code[0].source and "parameters" in code[0].metadata["tags"]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_executes_on_sweep_results(name, results_file, monkeypatch):
    monkeypatch.setenv("ABLATE_RESULTS", str(results_file.parent))
    root = str(ANALYSIS.parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [root,
                                                                   os.environ.get("PYTHONPATH")])))
    book = nbformat.read(ANALYSIS / f"{name}.ipynb", as_version=4)
    NotebookClient(book, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(ANALYSIS)}}).execute()
    outputs = [out for cell in book.cells if cell.cell_type == "code" for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]
    assert any("image/png" in out.get("data", {}) for out in outputs)  # figures were shown
    shown = "".join(str(out.get("data", {}).get("text/markdown", "")) for out in outputs)
    assert "coupling.name=vc,train.lr=0.0001" in shown  # the table of this sweep's arms
