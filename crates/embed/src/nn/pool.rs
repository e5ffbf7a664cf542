//! Pooling: ResNet's stem max pool and global average pooling.

use candle_core::Tensor;

use crate::error::Result;

/// Max pooling 3×3, stride 2, padding 1 (ResNet's stem). Inputs are ReLU
/// outputs (≥ 0), so zero padding equals PyTorch's −∞ padding.
pub(crate) fn max_pool_3x3_s2(x: &Tensor) -> Result<Tensor> {
    let x = x.pad_with_zeros(2, 1, 1)?.pad_with_zeros(3, 1, 1)?;
    Ok(x.max_pool2d_with_stride(3, 2)?)
}

/// Global average pooling NCHW → NC.
pub(crate) fn global_avg_pool(x: &Tensor) -> Result<Tensor> {
    Ok(x.mean((2, 3))?)
}
