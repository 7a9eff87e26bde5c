"""The spectral radius and largest singular value of square matrices (W_rec), on the host."""

from __future__ import annotations

import jax
import numpy as np


def spectral_host(a) -> tuple[np.ndarray, np.ndarray]:
    """(spectral radius, largest singular value) of [..., H, H] on the host, in a's dtype
    (computed in float64). A non-finite matrix (a diverged W_rec) gives NaN, not a crash."""
    dtype = np.asarray(a).dtype
    a = np.asarray(a, np.float64)
    rho, smax = np.full(a.shape[:-2], np.nan), np.full(a.shape[:-2], np.nan)
    ok = np.isfinite(a).all((-2, -1))
    if ok.any():
        rho[ok] = np.abs(np.linalg.eigvals(a[ok])).max(-1)
        smax[ok] = np.linalg.svd(a[ok], compute_uv=False)[..., 0]
    return rho.astype(dtype), smax.astype(dtype)


def spectral(w: jax.Array) -> tuple[jax.Array, jax.Array]:
    """`spectral_host` inside a program: JAX's eig runs on the CPU only, so this is a host
    callback, correct on any device. Both in one callback: a device SVD running beside a
    host eig fought over the cores (a 40 ms step took 1.4 s on 2 cores)."""
    out = jax.ShapeDtypeStruct(w.shape[:-2], w.dtype)
    return jax.pure_callback(spectral_host, (out, out), w, vmap_method="expand_dims")


def spectral_radius(w: jax.Array) -> jax.Array:
    return spectral(w)[0]


def sigma_max(w: jax.Array) -> jax.Array:
    return spectral(w)[1]


def jacobian_gram_eigs(stack, h0: jax.Array) -> jax.Array:
    """[n, width] eigenvalues of J J^T (the squared singular values of J), J = d stack(h) / dh at
    each row of h0 [n, width]: `stack` maps one example's hidden state to the last one's."""
    import jax.numpy as jnp

    j = jax.vmap(jax.jacfwd(stack))(h0)  # [n, width, width]
    return jnp.linalg.eigvalsh(j @ jnp.swapaxes(j, -1, -2))
