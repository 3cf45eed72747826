"""Size arithmetic shared by the 1D and 2D networks (the functions themselves are in waveunet.sizes)."""

from __future__ import annotations

from .. import sizes


class SizedNetwork:
    """Mixin: valid input/output lengths of a network from its size ops.

    A subclass provides :meth:`size_ops` -> (contracting, bottleneck, expanding) and sets
    ``self.training_sizes = self.sizes(desired_training_output)``. For images every length is one
    side of the (square or not) tile: height and width follow the same arithmetic.
    """

    training_sizes: sizes.UNetSizes

    def size_ops(self) -> tuple[list, list, list]:
        raise NotImplementedError

    def sizes(self, desired_output: int) -> sizes.UNetSizes:
        """Input/output lengths for at least ``desired_output`` output samples (pixels per side)."""
        return sizes.unet_sizes(*self.size_ops(), desired_output)

    def output_length_for(self, input_length: int) -> int:
        """Output length for ``input_length``; :class:`waveunet.sizes.SizeError` if it is not valid."""
        return sizes.output_length_for(*self.size_ops(), input_length)

    @property
    def length_step(self) -> int:
        """Valid input (and output) lengths are spaced by this many samples: 2**L for the paper's nets."""
        return sizes.valid_length_step(self.size_ops()[0])

    @property
    def context(self) -> int:
        """Input samples needed on each side of a training example's output window."""
        return self.training_sizes.context

    def check_input_length(self, length: int) -> int:
        """The output length for ``length``, or a ValueError that says how to get a valid one."""
        try:
            return self.output_length_for(length)
        except sizes.SizeError as error:
            raise ValueError(f"input length {length} is not valid for this {type(self).__name__} ({error}); "
                             f"use model.sizes(n).input_length") from None
