"""makeann's block reading order: the vectorised read_order against the
block-by-block emulation of makeann.md section 4."""

import numpy as np
import pytest

from rtpproxy_py.tools.makeann import block_positions, read_order


@pytest.mark.parametrize("total", [1, 50, 159, 160, 161, 1000, 48000])
@pytest.mark.parametrize("limit,loop", [(None, False), (2, True), (1000, False), (1000, True),
                                        (199999, True), (480, True)])
def test_read_order_matches_block_emulation(total, limit, loop):
    blocks = block_positions(total, limit, loop)
    positions, lengths = read_order(total, limit, loop)
    assert lengths.tolist() == [len(b) for b in blocks]
    assert positions.tolist() == np.concatenate(blocks).tolist()
