"""The optional libraries the suite compares against, and their thread settings."""

import importlib


class Peers:
    """SciPy, PyTorch and a BLAS thread limiter, each present only when importable.

    Parameters
    ----------
    use_scipy, use_torch : bool
        Whether to look for SciPy and PyTorch at all.

    Attributes
    ----------
    scipy_special : module or None
        ``scipy.special``.
    torch : module or None
        ``torch``.
    scipy_version, torch_description : str or None
        Version strings for the report.
    blas_description : str
        How NumPy's BLAS threads are set during the run.
    """

    def __init__(self, use_scipy=True, use_torch=True):
        self.scipy_special = None
        self.scipy_version = None
        if use_scipy:
            try:
                import scipy
                import scipy.special
            except ImportError:
                pass
            else:
                self.scipy_special = scipy.special
                self.scipy_version = scipy.__version__

        self.torch = None
        self.torch_description = None
        self._torch_threads = None
        if use_torch:
            try:
                import torch
            except ImportError:
                pass
            else:
                self.torch = torch
                self._torch_threads = torch.get_num_threads()
                # Older PyTorch releases may lack get_cpu_capability.
                get_capability = getattr(
                    torch.backends.cpu, "get_cpu_capability", lambda: "unknown"
                )
                capability = get_capability()
                self.torch_description = (
                    f"{torch.__version__} (CPU capability {capability})"
                )

        # Imported after torch, so that the BLAS torch loads is found too.
        self._blas = None
        self._blas_limit = None
        try:
            threadpoolctl = importlib.import_module("threadpoolctl")
        except ImportError:
            self.blas_description = (
                "BLAS default, not limited (install threadpoolctl to limit it to the "
                "thread count of each row)"
            )
        else:
            self._blas = threadpoolctl.ThreadpoolController().select(user_api="blas")
            libraries = ", ".join(
                f"{info['internal_api']} {info['version']} ({info['num_threads']} "
                "threads by default)"
                for info in self._blas.info()
            )
            self.blas_description = (
                f"limited to the thread count of each row with threadpoolctl; "
                f"{libraries or 'no BLAS found'}"
            )

    @property
    def can_limit_blas(self):
        """True if the BLAS thread count can be set (threadpoolctl is installed)."""
        return self._blas is not None

    def set_threads(self, threads):
        """Set PyTorch's and the BLAS thread count for the next measurement."""
        if self.torch is not None:
            self.torch.set_num_threads(threads)
        if self._blas is not None:
            limit = self._blas.limit(limits=threads)
            # The first limiter remembers the thread counts found at start.
            if self._blas_limit is None:
                self._blas_limit = limit

    def restore_threads(self):
        """Restore the thread counts found at start."""
        if self.torch is not None:
            self.torch.set_num_threads(self._torch_threads)
        if self._blas_limit is not None:
            self._blas_limit.restore_original_limits()
            self._blas_limit = None
