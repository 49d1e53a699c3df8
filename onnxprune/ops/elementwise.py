"""Channel-wise ops: each output position depends on the same position of the inputs
(with numpy broadcasting for the multi-input ones)."""

from __future__ import annotations

from ..analysis import NodeContext
from ._common import broadcast, passthrough
from ._registry import register

UNARY = (
    "Relu LeakyRelu Sigmoid HardSigmoid HardSwish Tanh Elu Selu Celu Softplus Softsign Gelu "
    "Mish Erf Exp Log Abs Neg Sqrt Reciprocal Floor Ceil Round Sign Sin Cos Tan Asin Acos Atan "
    "Sinh Cosh Asinh Acosh Atanh ThresholdedRelu Shrink Not IsNaN IsInf Identity Cast Swish "
    "BitwiseNot"
).split()

BROADCAST = (
    "Add Sub Mul Div Pow Max Min Sum Mean Equal Greater Less GreaterOrEqual LessOrEqual And Or "
    "Xor Mod BitShift BitwiseAnd BitwiseOr BitwiseXor PRelu Where"
).split()


@register(*UNARY)
def unary(ctx: NodeContext) -> None:
    passthrough(ctx)


@register("Clip", "CastLike")
def first_input_only(ctx: NodeContext) -> None:
    """Clip's min/max are scalars, CastLike's second input only names a type."""
    passthrough(ctx)


@register("Dropout")
def dropout(ctx: NodeContext) -> None:
    passthrough(ctx, 0, (0, 1))


@register(*BROADCAST)
def elementwise(ctx: NodeContext) -> None:
    ctx.set_output(0, broadcast(ctx, list(range(ctx.n_inputs))))
