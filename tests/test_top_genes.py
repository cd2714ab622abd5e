"""`top_genes` against an independent per-cell reference, on random matrices (hypothesis) and backed files."""
import anndata as ad
import numpy as np
import scipy.sparse as sp
from hypothesis import given, settings, strategies as st

from cello1.bench import loop_top_genes, same_ranking
from cello1.genes import top_gene_indices, top_genes


def reference(dense, n):
    "Stable descending sort by value, then column; zeros dropped."
    out = []
    for row in dense:
        order = np.lexsort((np.arange(len(row)), -row))
        out.append([int(j) for j in order[:n] if row[j] > 0])
    return out


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.integers(1, 30), st.integers(1, 80), st.floats(0, 1), st.integers(1, 15), st.integers(0, 10**6),
       st.sampled_from(["int", "float", "ties"]), st.integers(1, 9))
def test_matches_reference(rows, cols, density, n, seed, kind, chunk):
    rng = np.random.default_rng(seed)
    dense = (rng.random((rows, cols)) < density) * {"int": rng.integers(1, 1000, (rows, cols)),
                                                     "float": rng.random((rows, cols)) + 1e-3,
                                                     "ties": rng.integers(1, 3, (rows, cols))}[kind]
    got = top_gene_indices(sp.csr_matrix(dense), n, chunk_rows=chunk, block_values=max(n, 40))
    assert [[int(j) for j in r if j >= 0] for r in got] == reference(dense, n)
    assert [[int(j) for j in r if j >= 0] for r in top_gene_indices(dense, n)] == reference(dense, n)


def test_formats_agree(tmp_path):
    rng = np.random.default_rng(1)
    m = sp.random(300, 500, density=0.05, format="csr", random_state=1, data_rvs=lambda k: rng.integers(1, 50, k).astype(np.float32))
    names = [f"G{j}" for j in range(500)]
    expect = top_genes(m, names, 25)
    assert top_genes(m.tocsc(), names, 25) == expect
    assert top_genes(m.toarray().astype(np.int64), names, 25) == expect
    ad.AnnData(X=m).write_h5ad(tmp_path / "x.h5ad")
    backed = ad.read_h5ad(tmp_path / "x.h5ad", backed="r")
    rows = np.array([3, 17, 250, 299])
    assert top_genes(backed.X, names, 25, rows=rows, chunk_rows=2) == [expect[i] for i in rows]


def test_agrees_with_public_loop_on_values():
    rng = np.random.default_rng(2)
    m = sp.random(200, 400, density=0.1, format="csr", random_state=2, data_rvs=lambda k: rng.geometric(0.3, k).astype(np.float32))
    names = np.array([f"G{j}" for j in range(400)])
    rows = list(range(200))
    assert same_ranking(m, names, top_genes(m, names, 50), loop_top_genes(m, names, 50), rows)


def test_never_lists_zero_or_rejects_bad_values():
    m = sp.csr_matrix((np.array([0.0, 3.0]), np.array([0, 2]), np.array([0, 2, 2])), shape=(2, 3))  # a stored zero
    assert m.nnz == 2
    assert top_genes(m, ["A", "B", "C"], 3) == [["C"], []]
    import pytest
    with pytest.raises(ValueError, match="non-negative"):
        top_genes(sp.csr_matrix(np.array([[np.nan, 1.0]])), ["A", "B"], 2)
