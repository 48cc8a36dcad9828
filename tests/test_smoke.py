import numpy as np

import fastsoftmax


def test_softmax_first_example():
    result = fastsoftmax.softmax([2.0, 1.0, 0.1])
    np.testing.assert_allclose(result, [0.659, 0.242, 0.099], atol=5e-4)
