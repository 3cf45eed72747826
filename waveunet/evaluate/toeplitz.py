"""Symmetric positive (semi)definite block-Toeplitz systems: the normal equations of FIR least squares.

The Gram matrix of the delayed copies of ``K`` signals, ordered (delay, signal), has the ``K × K``
block ``T[a, b] = R(b − a)`` with ``R(−k) = R(k)ᵀ``. For band-limited references these systems are
ill-conditioned: condition numbers of 1e11 for 16-bit stems (their quantisation noise is white),
1e15 to beyond 1e17 for MP3-coded ones, empty above ~16 kHz. A float64 solve (museval's dense LU)
then returns rounding noise along the near-null directions, and BSSEval's framewise criteria turn
that noise into dB. :class:`NormalSystem` therefore solves

1. by conjugate gradients preconditioned with the Cholesky factor of ``T + μ₀ I``
   (:class:`SchurFactor`, from the block Schur algorithm or, for small systems, LAPACK; the ridge
   is far below any eigenvalue that matters and only keeps the factorisation positive
   definite), every product ``T p`` computed exactly (:mod:`.extended`) and iterate and residual
   kept as double-doubles, to a residual of ~1e-20 of ``d``: the solution of the system itself,
   not of its rounding;
2. where that does not converge (a system singular at rounding level, its right-hand side outside
   the range), ``T + μ I`` instead, ``μ`` the smallest of a ladder of fractions of the mean
   eigenvalue (:data:`RIDGES`) for which it does; a caller may also ask for a ridge up front
   (:class:`NormalSystem`'s ``ridge``).

:meth:`NormalSystem.perturbation` gives the first-order change of the solution when the
correlations are off by a few ulps, as a float64 evaluator's are: how far the scores then move
says how well float64 data determine them.
"""

from __future__ import annotations

import torch

from .extended import ExactToeplitz, dd_add_dd, two_product, two_sum

#: exact-residual iterations stop at this relative residual: the solution error along an
#: eigenvector is the residual over the eigenvalue, ~1e-5 relative for condition numbers of 1e15
EXACT_TOLERANCE = 1e-20
#: a solve counts as converged below this relative residual
CONVERGED = 1e-18
#: iterations at most; a system still above :data:`CONVERGED` must gain a factor 10 every
#: :data:`_PROGRESS_WINDOW` iterations or counts as not converging
MAX_ITERATIONS = 40
_PROGRESS_WINDOW = 8
#: the preconditioner's ridge μ₀, relative to the mean eigenvalue (trace / size)
PRECONDITIONER_RIDGE = 1e-14
#: the ridges tried, in turn, relative to the mean eigenvalue, for a system whose exact solve does
#: not converge; the smallest ones keep the scores within museval's own (rounding) spread
RIDGES = (1e-12, 1e-11, 1e-10, 1e-9, 1e-8)


class SchurFactor:
    """``(T + μ₀ I)⁻¹`` by the Cholesky factor of ``T + μ₀ I`` from the block Schur algorithm.

    The generator of the displacement ``T − Z T Zᵀ = Uᵀ U − Vᵀ V`` (``Z`` the block shift) is
    ``U = C₀⁻ᵀ [R(0), R(1), …]``, ``V = C₀⁻ᵀ [0, R(1), …]`` with ``R(0) = C₀ᵀ C₀``. Each step takes
    the next block row of the factor from ``U``, shifts ``U`` one block on, and zeroes the next
    block of ``V`` by a block hyperbolic rotation with reflection coefficient ``ρ = b a⁻¹``,
    applied in the mixed form of Bojanczyk, Brent, de Hoog and Sweet (1995): ``U' = G⁻ᵀ (U − ρᵀ V)``
    and then ``V' = H V − (H⁻ᵀ ρ Gᵀ) U'`` from the new ``U'``, with ``I − ρᵀρ = GᵀG`` and
    ``I − ρρᵀ = HᵀH``. That form keeps the factor as accurate as a dense Cholesky's on these
    systems (the Levinson recursion, which builds the inverse instead, was off by more than 100 %)
    at ``O(K³ L²)`` instead of ``O(K³ L³)`` operations.

    Systems of at most :data:`DENSE_SIZE` unknowns are factored densely instead (LAPACK's
    Cholesky): as accurate, and faster there than the Python-driven recursion.

    The ridge grows tenfold for a system where a step is not positive definite (rounding).

    Args:
        blocks: [batch, L, K, K]; ridge: [batch] μ₀.
    """

    def __init__(self, blocks: torch.Tensor, ridge: torch.Tensor):
        ridge = ridge.clone()
        factorize = _dense_cholesky if blocks.shape[1] * blocks.shape[2] <= DENSE_SIZE else _block_schur
        factor, failed = factorize(_ridged(blocks, ridge)[0])
        for _ in range(16):
            if not bool(failed.any()):
                break
            index = failed.nonzero()[:, 0]
            floor = PRECONDITIONER_RIDGE * blocks[index, 0].diagonal(dim1=-2, dim2=-1).mean(-1)
            ridge[index] = torch.maximum(10 * ridge[index], floor)
            factor[index], failed[index] = factorize(_ridged(blocks[index], ridge[index])[0])
        self.factor, self.ridge = factor, ridge

    def __call__(self, rhs: torch.Tensor) -> torch.Tensor:
        """``(Rᵀ R)⁻¹ rhs``, rhs [batch, L, K, M] -> the same."""
        flat = rhs.reshape(rhs.shape[0], -1, rhs.shape[-1])
        lower = torch.linalg.solve_triangular(self.factor.transpose(-1, -2), flat, upper=False)
        return torch.linalg.solve_triangular(self.factor, lower, upper=True).reshape(rhs.shape)


#: systems up to this many unknowns (K L) are factored densely
DENSE_SIZE = 2048


def _dense_cholesky(blocks: torch.Tensor, block: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_block_schur`'s result by a dense Cholesky factorisation, blocked: LAPACK's on the
    diagonal blocks, triangular solves and products below them (torch's ``cholesky`` of a large
    matrix spends longer zeroing its upper triangle than factoring it; blocks of 256 were 2-6 %
    faster on the benchmark's cases than 512, 1024 slower). Only the lower triangle of the result's
    transpose, the upper triangle of the result, is meaningful (and read)."""
    lower = dense(blocks)
    n = lower.shape[-1]
    failed = torch.zeros(lower.shape[0], dtype=torch.bool, device=lower.device)
    for first in range(0, n, block):
        end = min(first + block, n)
        diagonal, info = torch.linalg.cholesky_ex(lower[:, first:end, first:end])
        failed |= info != 0
        lower[:, first:end, first:end] = diagonal
        if end == n:
            break
        panel = torch.linalg.solve_triangular(diagonal, lower[:, end:, first:end].transpose(-1, -2),
                                              upper=False).transpose(-1, -2)  # A₂₁ L₁₁⁻ᵀ
        lower[:, end:, first:end] = panel
        for row in range(end, n, block):  # the trailing matrix's lower blocks: A₂₂ − L₂₁ L₂₁ᵀ
            stop = min(row + block, n)
            lower[:, row:stop, end:stop] -= panel[:, row - end:stop - end] @ panel[:, :stop - end].transpose(-1, -2)
    return lower.transpose(-1, -2), failed


def _block_schur(blocks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The upper triangular ``R`` [batch, L K, L K] with ``T = Rᵀ R``, and [batch] bool: a step
    was not positive definite (the factor is then not usable)."""
    batch, lags, k, _ = blocks.shape
    n = lags * k
    eye = torch.eye(k, dtype=blocks.dtype, device=blocks.device)
    lower0, info = torch.linalg.cholesky_ex(blocks[:, 0])  # R(0) = C₀ᵀ C₀ with C₀ = lower0ᵀ
    failed = info != 0
    first_row = blocks.permute(0, 2, 1, 3).reshape(batch, k, n)  # [R(0), R(1), …]
    u = torch.linalg.solve_triangular(lower0, first_row, upper=False)
    v = u.clone()
    v[:, :, :k] = 0
    factor = blocks.new_empty(batch, n, n)  # only the upper triangle is written, and read
    factor[:, :k] = u
    infos = []
    for i in range(1, lags):
        start = i * k
        shifted = u[:, :, start - k:n - k]  # U moved one block on: its columns start … n
        rest = v[:, :, start:]
        a, b = shifted[:, :, :k], rest[:, :, :k]
        rho_t = torch.linalg.solve(a.transpose(-1, -2), b.transpose(-1, -2))  # (b a⁻¹)ᵀ
        rho = rho_t.transpose(-1, -2)
        pair = torch.stack([rho_t, rho]) @ torch.stack([rho, rho_t])  # ρᵀρ and ρρᵀ
        (g, h), info = torch.linalg.cholesky_ex(eye - pair)  # lower: Gᵀ and Hᵀ
        infos.append(info)
        new_u = torch.linalg.solve_triangular(g, shifted - rho_t @ rest, upper=False)
        mixing = torch.linalg.solve_triangular(h, rho @ g, upper=False)  # H⁻ᵀ ρ Gᵀ
        new_v = h.transpose(-1, -2) @ rest - mixing @ new_u
        u[:, :, start:] = new_u
        v[:, :, start:] = new_v
        factor[:, start:start + k, start:] = new_u
    if infos:
        failed |= (torch.stack(infos) != 0).any(dim=0).any(dim=0)
    failed |= ~torch.isfinite(u[:, :, -k:]).flatten(1).all(dim=1)
    return factor, failed


class NormalSystem:
    """A batch of systems ``T x = d`` (symmetric positive semidefinite block-Toeplitz ``T``) and
    what solving them exactly, with a ridge, and perturbed needs: the exact products, and one
    :class:`SchurFactor` of ``T + μ₀ I`` that preconditions them all.

    Args:
        blocks: [batch, L, K, K], ``blocks[:, k] = R(k)`` for lags ``k = 0 … L−1``.
        rhs: [batch, L, K, M], right-hand sides ordered (delay, signal).
        rhs_scale: [batch, K, M], the size of the sums that gave ``rhs`` (for its rounding).
        ridge: [batch] the relative ridge to solve with (:meth:`solve_determined`); none if None.
        blocks_lo, rhs_lo: the low parts of ``blocks`` and ``rhs`` if they are double-doubles
            (the exact solve is then that of their sums).
    """

    def __init__(self, blocks: torch.Tensor, rhs: torch.Tensor, rhs_scale: torch.Tensor,
                 ridge: torch.Tensor | None = None, blocks_lo: torch.Tensor | None = None,
                 rhs_lo: torch.Tensor | None = None):
        self.blocks, self.rhs, self.rhs_scale = blocks, rhs, rhs_scale
        self.blocks_lo = torch.zeros_like(blocks) if blocks_lo is None else blocks_lo
        self.rhs_lo = torch.zeros_like(rhs) if rhs_lo is None else rhs_lo
        size = blocks.shape[-1]
        self.mean_eigenvalue = blocks[:, 0].diagonal(dim1=-2, dim2=-1).sum(-1) / size
        self.operator = ExactToeplitz(blocks, self.blocks_lo)
        #: the ridge each system will be solved with (relative), known before it is factored, so
        #: that the factor preconditions exactly that system
        self.ridge = torch.zeros_like(self.mean_eigenvalue) if ridge is None else ridge
        factor_ridge = torch.clamp(self.ridge, min=PRECONDITIONER_RIDGE) * self.mean_eigenvalue
        self.preconditioner = SchurFactor(blocks, factor_ridge)

    def solve(self, ridge: torch.Tensor):
        """Exact solutions of ``(T + μ I) x = d``, ``μ = ridge · mean eigenvalue`` [batch] (0: the
        system itself). Returns x and the relative residuals. The one factorisation preconditions
        ridges up to a hundred times its own (the preconditioned eigenvalues stay within [1, 100])."""
        mu = ridge * self.mean_eigenvalue
        operator = ExactToeplitz(*_ridged(self.blocks, mu, self.blocks_lo)) if bool((mu > 0).any()) else self.operator
        start = self.preconditioner(self.rhs)  # M⁻¹ d, the preconditioner's solutions
        return _exact_cg(operator, self.rhs, self.preconditioner, start, self.rhs_lo)

    def solve_determined(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The exact solutions of the systems (with their :attr:`ridge`); for a system where that
        does not converge (singular at rounding level, the right-hand side outside its range), of
        ``T + μ I`` with the smallest larger ridge of :data:`RIDGES` that does, preconditioned by a
        factor of its own.

        Returns:
            x [batch, L, K, M] and the ridges used [batch] (relative to the mean eigenvalue).
        """
        ridge = self.ridge.clone()
        x, residual = self.solve(ridge)
        for relative in RIDGES:
            failed = ~(residual <= CONVERGED) & (ridge < relative)  # NaN counts as failed
            if not bool(failed.any()):
                break
            index = failed.nonzero()[:, 0]
            mu = relative * self.mean_eigenvalue[index]
            ridged, ridged_lo = _ridged(self.blocks[index], mu, self.blocks_lo[index])
            factor = SchurFactor(ridged, mu)
            rhs = self.rhs[index]
            operator = ExactToeplitz(ridged, ridged_lo)
            solution, relative_residual = _exact_cg(operator, rhs, factor, factor(rhs), self.rhs_lo[index])
            x, residual = x.clone(), residual.clone()
            x[index], residual[index] = solution, relative_residual
            ridge[index] = relative
        return x, ridge

    def perturbation(self, x: torch.Tensor, ridge: torch.Tensor, seed: int = 0) -> torch.Tensor:
        """The first-order change ``δx = (T + μ I)⁻¹ (δd − δT x)`` of the solutions when every
        correlation behind ``T`` and ``d`` is off by a few ulps of the sums it came from, as a
        float64 evaluator's own are (museval's FFTs; a different rounding of the same data).
        How far the scores move with it says how well float64 data determine them."""
        generator = torch.Generator(device="cpu").manual_seed(seed)
        batch, lags, k, m = self.rhs.shape
        diagonal = self.blocks[:, 0].diagonal(dim1=-2, dim2=-1).clamp_min(0).sqrt()  # [batch, K]
        eps = torch.finfo(self.blocks.dtype).eps * _PERTURBATION_ULPS

        def noise(*shape):
            return torch.randn(*shape, generator=generator, dtype=self.blocks.dtype).to(self.blocks.device)

        delta_blocks = eps * noise(batch, lags, k, k) * (diagonal[:, None, :, None] * diagonal[:, None, None, :])
        delta_blocks[:, 0] = (delta_blocks[:, 0] + delta_blocks[:, 0].transpose(-1, -2)) / 2
        delta_rhs = eps * noise(batch, lags, k, m) * self.rhs_scale[:, None]
        change = delta_rhs - ExactToeplitz(delta_blocks).approximate(x)
        mu = ridge * self.mean_eigenvalue
        operator = ExactToeplitz(_ridged(self.blocks, mu)[0]) if bool((mu > 0).any()) else self.operator
        # one step past M⁻¹: a second one changed no sensitivity by more than 2 % (and no flag) on
        # the tests' 16-bit and MP3-coded cases; none at all was off by up to 9x on one
        return _float64_cg(operator, change, self.preconditioner, iterations=1)


#: the rounding errors of the correlations, in ulps of the sums they come from: museval's come from
#: FFTs of the whole track (2^19 points and more), which err by ~10 ulps; ours by 1-2
_PERTURBATION_ULPS = 16.0


def _float64_cg(operator: ExactToeplitz, rhs: torch.Tensor, preconditioner, iterations: int = 4) -> torch.Tensor:
    """A few steps of float64 preconditioned CG from ``M d``: enough for a perturbation's size."""
    x = preconditioner(rhs)
    residual = rhs - operator.approximate(x)
    direction = energy = None
    for _ in range(iterations):
        z = preconditioner(residual)
        energy, previous = _dot(residual, z), energy
        direction = z if direction is None else z + _safe_ratio(energy, previous) * direction
        product = operator.approximate(direction)
        step = _safe_ratio(energy, _dot(direction, product))
        x = x + step * direction
        residual = residual - step * product
    return x


def _ridged(blocks: torch.Tensor, mu: torch.Tensor,
            blocks_lo: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``T + μ I`` per system (blocks [batch, L, K, K], μ [batch]) and, for a double-double ``T``
    (``blocks_lo``, else None), its low parts: ``hi + lo`` is then exactly ``T + μ I``."""
    eye = torch.eye(blocks.shape[-1], dtype=blocks.dtype, device=blocks.device)
    hi, lo = two_sum(blocks[:, 0], mu[:, None, None] * eye)
    ridged = blocks.clone()
    ridged[:, 0] = hi
    if blocks_lo is None:
        return ridged, None
    ridged_lo = blocks_lo.clone()
    ridged_lo[:, 0] += lo
    return ridged, ridged_lo


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """One inner product per system and right-hand side: [batch, 1, 1, M]."""
    return (a * b).sum(dim=(1, 2), keepdim=True)


def _relative(residual: torch.Tensor, rhs_norm: torch.Tensor) -> torch.Tensor:
    """Largest relative residual per system, [batch] (NaN stays NaN)."""
    norms = residual.square().sum(dim=(1, 2)).sqrt()  # [batch, M]
    return (norms / rhs_norm).amax(dim=1)


def _exact_cg(operator: ExactToeplitz, rhs, preconditioner, start, rhs_lo) -> tuple[torch.Tensor, torch.Tensor]:
    """Preconditioned CG in double-double with exact products, from ``start``.

    The iterate and the residual are double-doubles; every product ``T p`` is exact, so the
    residual recurrence ``r ← r − α T p`` stays the true residual to ~2^-100 (it is recomputed from
    the iterate every :data:`_REPLACE_EVERY` steps all the same), and the curvature ``pᵀ T p``,
    which along near-null directions a float64 product gets all wrong, is right. Polak-Ribière's
    ``β`` keeps the directions useful when the preconditioner is poor.

    Returns:
        the iterate with the smallest residual (as float64) and that relative residual [batch].
    """
    rhs_norm = rhs.square().sum(dim=(1, 2)).sqrt().clamp_min(torch.finfo(rhs.dtype).tiny)
    x_hi, x_lo = start.clone(), torch.zeros_like(start)
    r_hi, r_lo = _residual(operator, rhs, rhs_lo, x_hi, x_lo)
    direction = energy = preconditioned = None
    best = x_hi
    best_relative = torch.full((rhs.shape[0],), float("inf"), dtype=rhs.dtype, device=rhs.device)
    history = []
    for iteration in range(1, MAX_ITERATIONS + 1):
        relative = _relative(r_hi + r_lo, rhs_norm)
        improved = relative < best_relative  # NaN never improves
        best = torch.where(improved[:, None, None, None], x_hi + x_lo, best)
        best_relative = torch.where(improved, relative, best_relative)
        history.append(best_relative)
        # stop when converged, or when a system still far off gains less than 10x in a while
        stalled = torch.zeros_like(best_relative, dtype=torch.bool)
        if len(history) > _PROGRESS_WINDOW:
            stalled = history[-_PROGRESS_WINDOW - 1] < 10 * best_relative
        active = (best_relative > EXACT_TOLERANCE) & ~(stalled & (best_relative > CONVERGED))
        if not bool(active.any()) or iteration == MAX_ITERATIONS:
            break
        previous_preconditioned, preconditioned = preconditioned, preconditioner(r_hi)
        energy, previous = _dot(r_hi, preconditioned), energy
        if direction is None:
            direction = preconditioned
        else:
            beta = _safe_ratio(_dot(r_hi, preconditioned - previous_preconditioned), previous)
            direction = preconditioned + beta.clamp_min(0) * direction
        product_hi, product_lo = operator.product(direction)
        step = _safe_ratio(energy, _dot(direction, product_hi))
        step = torch.where(active[:, None, None, None], step, torch.zeros_like(step))
        x_hi, x_lo = dd_add_dd(x_hi, x_lo, *two_product(step, direction))
        if iteration % _REPLACE_EVERY == 0:
            r_hi, r_lo = _residual(operator, rhs, rhs_lo, x_hi, x_lo)
        else:
            t_hi, t_lo = two_product(step, product_hi)
            r_hi, r_lo = dd_add_dd(r_hi, r_lo, -t_hi, -(t_lo + step * product_lo))
    return best, best_relative


#: the residual recurrence is replaced by the true residual this often
_REPLACE_EVERY = 10


def _residual(operator: ExactToeplitz, rhs, rhs_lo, x_hi, x_lo):
    """``(d + d_lo) − T (x_hi + x_lo)`` as a double-double (the product by ``x_lo`` in float64
    suffices)."""
    product_hi, product_lo = operator.product(x_hi)
    return two_sum(rhs - product_hi, rhs_lo - (product_lo + operator.approximate(x_lo)))


def _safe_ratio(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.where(b != 0, a / b, torch.zeros_like(a))


def toeplitz_kernel(blocks: torch.Tensor) -> torch.Tensor:
    """``T``'s blocks at lags ``L−1 … 0 … −(L−1)`` [batch, 2L−1, K, K], ordered so that
    ``(T x)[a] = (kernel ∗ x)[L − 1 + a]``."""
    return torch.cat([blocks.flip(1), blocks.transpose(-1, -2)[:, 1:]], dim=1)


def toeplitz_spectrum(blocks: torch.Tensor, n_fft: int) -> torch.Tensor:
    """The spectrum [batch, F, K, K] of :func:`toeplitz_kernel` (``n_fft >= 3 L − 2``)."""
    return torch.fft.rfft(toeplitz_kernel(blocks), n=n_fft, dim=1)


def dense(blocks: torch.Tensor) -> torch.Tensor:
    """The full matrix ``T`` [batch, L K, L K], rows and columns ordered (delay, signal).

    Row ``(a, p)`` of ``T`` is ``R(b − a)[p, q]`` over ``(b, q)``: the lags ``−a … L−1−a`` of
    ``h[p, lag, q]``, contiguous. So ``T`` is a strided view of ``h`` with a negative stride in
    ``a``, and one copy makes it (numpy has negative strides; torch flips a Hankel view instead,
    three times slower)."""
    full = torch.cat([blocks.transpose(-1, -2).flip(1)[:, :-1], blocks], dim=1)  # lags −(L−1) … L−1
    h = full.permute(0, 2, 1, 3).contiguous()  # [batch, K(p), 2L−1, K(q)]
    return _rows_by_numpy(h) if h.device.type == "cpu" else _rows_by_flip(h)


def _rows_by_numpy(h: torch.Tensor) -> torch.Tensor:
    import numpy as np

    batch, k, span, _ = h.shape
    lags = (span + 1) // 2
    array = h.numpy()
    size = array.itemsize
    rows = np.lib.stride_tricks.as_strided(array[:, :, lags - 1:], shape=(batch, lags, k, lags * k),
                                           strides=(array.strides[0], -k * size, array.strides[1], size))
    return torch.from_numpy(rows.copy(order="C")).reshape(batch, lags * k, lags * k)


def _rows_by_flip(h: torch.Tensor) -> torch.Tensor:
    batch, k, span, _ = h.shape
    lags = (span + 1) // 2
    stride = h.stride()  # reversed[c, p, (b, q)] = h[p, c + b, q] is row a = L−1−c
    reversed_rows = h.as_strided((batch, lags, k, lags * k), (stride[0], stride[2], stride[1], 1))
    return reversed_rows.flip(1).reshape(batch, lags * k, lags * k)
