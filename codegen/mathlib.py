"""Branch-free transcendental functions emitted as llvmlite IR.

Why: ``llvm.exp``/``llvm.log``/... and libm calls in a loop either stop the loop vectorizer or
get scalarized into one libm call per lane (see shared/notes/llvmlite-facts.md, section 2).
Everything here is straight-line code: arithmetic, fcmp/select, bitcasts, integer ops and
intrinsics that have native vector forms (llvm.fma, fabs, floor, trunc, rint, copysign).
So a scalar loop that calls :func:`emit` is vectorized by LLVM like any ``a*b+c`` loop.
On AVX-512 hosts a few single instructions with no generic IR form (vrcp14ps, vscalefps with a
float exponent, vfixupimmps) are reached through declared "primitives" that the vectorizer widens
like libmvec functions; modules using them go through :func:`finish_ir` before and
:func:`link_primitives` after the optimization pipeline (codegen/jit.py does both).

API::

    emit(name, builder, *args) -> ir.Value      # name in SUPPORTED; pow takes (x, y)

Arguments are ``float``/``double`` or ``<N x float>``/``<N x double>``; the result has the
argument's type. No fast-math flags are used anywhere: ``fast`` lets LLVM reassociate the
2^n scaling (NaN for large x, see the notes), ``nnan``/``ninf`` would drop the NaN/inf
propagation the functions promise, and ``contract`` could fuse the error-free transforms
(two-sum, two-prod) used by pow. Where an FMA is wanted it is an explicit ``llvm.fma``,
so the code assumes a target with hardware FMA (x86-64-v3 and later; on targets without
it LLVM lowers llvm.fma to a libm ``fma`` call and the loop is no longer call-free).

Algorithms (polynomial coefficients: minimax fits made with mpmath's Remez-like exchange
for each precision; see the tests for measured errors):

* exp:   n = rint(x/ln2) (by adding 1.5*2^23 / 2^52 inside the FMA that scales x, so the integer
         n is read off the bits), r = x - n*ln2 (two FMAs, the first exact), exp(r) = 1 + r*(1 +
         r*P(r)) as one Horner chain of FMAs, result scaled by 2^n: with AVX-512 by `vscalefps`
         taking n as the float it already is, otherwise in two steps, so that results in the
         denormal range round once and 2^128 / 2^1024 are reachable before overflowing to inf.
* expm1: same reduction, p = expm1(r) = r + r^2/2 + r^3*Q(r) (accurate relative to tiny r);
         2^n*(1+p) - 1 evaluated as fma(2^n, p, 2^n - 1).
* log:   x = 2^k*m, m in [sqrt(1/2), sqrt(2)) by integer ops on the bits; fdlibm's form
         log(m) = f - (f^2/2 - s*(f^2/2 + R(s^2))), s = f/(2+f); denormals pre-scaled.
* log1p: the log kernel on u = 1+x plus the rounding error of 1+x, c = (x-(u-1))/u.
* tanh and sigmoid share one reduction of -|x| (so a kernel needing both does it once, and
         each has the same bits alone or together: `emit_tanh_sigmoid`): e = exp(-|x|) and
         E = expm1(-|x|) come from the same n and polynomial.
* tanh:  tanh(|x|) = -E(1+e)/(1+e^2), the sign copied back: no cancellation near 0 (E is
         accurate there) nor near 1.
* sigmoid: x >= 0: 1/(1+e), x < 0: e/(1+e). No exp overflow and full relative accuracy for
         large negative x (results down to the denormals). The numerator is one vfixupimmps
         with AVX-512.
         Both quotients have denominators in [1, 2]: they are formed by `div_in` (seed 1/d:
         AVX-512's vrcp14 estimate, else a polynomial and a Newton step; numerator folded into
         a last step: FMAs only, <= 1/4 ulp more than a division), not by a division
         instruction, which does not pipeline.
* sin/cos: n = rint(x*2/pi), Cody-Waite r = x - n*pi/2 with pi/2 split in 4 (f32) or 3 (f64)
         parts applied by FMAs, then sin/cos minimax polynomials on |r| <= pi/4 (+ slack) and the
         quadrant picked by fcmp on n mod 4 (computed in floating point, no int conversion).
* erf:   |x| < 1: x + x*P(x^2); 1 <= |x| < 4 (f32) / 6 (f64): erf = 1 - t*exp(-x^2 + P(t)),
         t = 2/(2+|x|) (the Numerical Recipes erfc form, refitted on the interval); above: 1.
* pow:   exp(y*log|x|) with C99 pow special cases. f32 computes log/exp in f64 lanes (so
         |y*log x| up to ~100 costs no accuracy); f64 computes log|x| as a double-double
         (k*ln2 + 2s + 2s^3/3 + tail with error-free sums) and exp of the double-double product.

Special values follow C/numpy: NaN in -> NaN out, exp overflow -> inf / underflow through the
denormals to 0, log(0) = -inf, log(<0) = NaN, log(inf) = inf, tanh/erf(+-inf) = +-1,
sigmoid(-inf) = 0, sin/cos(inf) = NaN, signed zeros preserved where C preserves them.

Measured max error in ULP of the correctly rounded result (tests/test_mathlib.py sweeps of
~240k points per function and dtype, long double / mpmath references). Deeper sweeps (44M f32
bit patterns, 8M f64 points; docs/mathlib.md) found at most 0.26 ULP more, worst 3.42 (f64 tanh):

    function   f32    f64        function   f32    f64
    exp        1.59   1.56       sigmoid    2.19   2.29
    expm1      1.39   1.83       sin        1.46   1.45
    log        0.82   0.77       cos        1.49   1.43
    log1p      1.99   2.00       erf        1.21   0.89 (vs mpmath)
    tanh       3.11   3.17       pow        1.00   1.28

All within the 4 ULP bar. sin/cos: that holds for |x| <= 3e5 (f32) and |x| <= 1e13 (f64).
Beyond, the rounding of x*2/pi (f32) and the fixed-length pi/2 make the reduction inexact
(f32 at 1e6: max abs error ~0.02); r is clamped to the fit interval so results stay finite
in [-1, 1], but they are not meaningful past ~2^24 (f32) / ~2^53 (f64).

Callers must not put function-level "no-nans-fp-math"/"no-infs-fp-math"/"unsafe-fp-math"
attributes on functions that inline this code: the NaN/inf selects would be folded away.
"""
from __future__ import annotations

import functools
import math
import re

from llvmlite import ir

__all__ = ["emit", "SUPPORTED"]

SUPPORTED: frozenset[str] = frozenset(
    {"exp", "expm1", "log", "log1p", "tanh", "sigmoid", "sin", "cos", "erf", "pow"})

_F32 = ir.FloatType()
_F64 = ir.DoubleType()

# ---------------------------------------------------------------------------------------
# Constants. "_S" = single precision set, "_D" = double precision set.
# Polynomial coefficients are listed lowest degree first (see _horner).
# ---------------------------------------------------------------------------------------

# expm1(r) = r + r^2/2 + r^3 * Q(r) on |r| <= ln2/2 (+0.1 % slack).
# Fit max relative error: 2^-28.2 (f32, 5 coefs), 2^-61.5 (f64, 10 coefs).
_EXPM1_Q = {
    False: (0.16666635870933533, 0.041666511446237564, 0.008341656997799873,
            0.0013930487912148237, 0.0001490549329901114),
    True: (0.16666666666666677, 0.04166666666666671, 0.008333333333320281,
           0.0013888888888842251, 0.00019841269889927547, 2.4801587440758515e-05,
           2.755724005869035e-06, 2.755714934086285e-07, 2.5110578719322997e-08,
           2.096040437369315e-09),
}
# exp(r) = 1 + r + r^2 * P(r) on |r| <= ln2/2 (+0.1 % slack), evaluated as one Horner chain
# 1 + r*(1 + r*(c2 + r*(c3 + ...))): one FMA per coefficient, where the expm1 form above also
# pays for r^2, the 1/2 step and the final 1 + p (exp needs no small-result accuracy near 0).
# Fit max relative error: 2^-27.8 (f32, degree 6), 2^-56.4 (f64, degree 11).
_EXP_P = {
    False: (0.4999999403953552, 0.1666651964187622, 0.04166839271783829, 0.008368780836462975,
            0.0013814467238262296),
    True: (0.500000000000001, 0.16666666666666674, 0.04166666666652095, 0.008333333333322127,
           0.0013888888948140007, 0.00019841269886836392, 2.4801486965350888e-05,
           2.7557242059340425e-06, 2.7632791582662336e-07, 2.5110154340462048e-08),
}
# log(1+f) = 2 atanh(s) = 2s + s*R(z), z = s^2, R(z) = z*(c1 + c2 z + ...), |s| <= 0.1716.
# Fit max relative error of 2 atanh(s): 2^-30.2 (f32), 2^-59.5 (f64).
_LOG_R = {
    False: (0.6666677594184875, 0.3997756540775299, 0.2987120449542999),
    True: (0.6666666666666734, 0.3999999999941566, 0.2857142874218919, 0.2222219859147477,
           0.18183563481549347, 0.15314069520402937, 0.14795785484322985),
}
# pow (f64): 2 atanh(s) - 2s - 2s^3/3 = s^5 * T(z); error 2^-80.8 relative to 2s.
_LOG_T64 = (0.4, 0.28571428571428376, 0.22222222222290675, 0.18181818169238098,
            0.15384616754551061, 0.13333240363530716, 0.11768676112549183,
            0.10422863620533578, 0.11013609425556058)
# sin(r) = r + r^3*S(r^2), cos(r) = 1 - r^2/2 + r^4*C(r^2) on |r| <= _SINCOS_R: pi/4 plus slack
# for the rounding of x*2/pi (in f32 it adds ~0.006 at |x| = 1e5 and ~0.05 at 1e6).
# Fit max relative error: sin 2^-27.1 / 2^-57.8, cos 2^-31.8 / 2^-63.8.
_SINCOS_R = {False: 0.85, True: 0.79}
_SIN_S = {
    False: (-0.16666647791862488, 0.008331723511219025, -0.00019459551549516618),
    True: (-0.16666666666666627, 0.008333333333321442, -0.00019841269829028968,
           2.7557313421107467e-06, -2.5050715566651862e-08, 1.589431885938665e-10),
}
_COS_C = {
    False: (0.04166663438081741, -0.0013886720407754183, 2.436934482830111e-05),
    True: (0.04166666666666659, -0.001388888888887209, 2.4801587288234474e-05,
           -2.755731399731447e-07, 2.087567563720886e-09, -1.1357208691076865e-11),
}
# erf(x) = x + x*P(x^2) on [0, 1]; relative error 2^-29.6 (f32), 2^-56.9 (f64).
_ERF_A = {
    False: (0.12837916612625122, -0.3761262595653534, 0.1128358542919159,
            -0.026853812858462334, 0.005188327748328447, -0.0008010193705558777,
            7.853861461626366e-05),
    True: (0.12837916709551256, -0.3761263890318352, 0.11283791670944185,
           -0.02686617064311149, 0.005223977606118633, -0.0008548325929321642,
           0.00012055293577098787, -1.4924712305511785e-05, 1.6447131610808416e-06,
           -1.6206314034296866e-07, 1.371098148153951e-08, -7.779470321690507e-10),
}
# erfc(x) = t*exp(-x^2 + P(t - t0)), t = 2/(2+x), on [1, 4] (f32) / [1, 6] (f64); the fit
# minimises the error of erfc relative to erf(x): 2^-36.0 (f32), 2^-61.5 (f64).
_ERF_B = {
    False: (-0.671794056892395, 1.345286250114441, 0.18937987089157104, -0.3751721978187561,
            -0.15991589426994324, 0.31008365750312805, -0.038301195949316025),
    True: (-0.7274922853522043, 1.3276012289343415, 0.23442498155999839, -0.3441290896727457,
           -0.2131176139875422, 0.24359273737125164, 0.19619365956567342, -0.2657633367747742,
           -0.16970782227018893, 0.34645333277392143, 0.10382559822331087, -0.5246710113918945,
           0.3427560598895355, -0.009395938046017845),
}
_ERF_T0 = {False: 0.5, True: 0.4583333333333333}
_ERF_B_END = {False: 4.0, True: 6.0}     # erfc(end) < half an ulp of 1: erf rounds to 1

_LOG2E = 1.4426950408889634
# ln2 = _LN2_HI + _LN2_LO, _LN2_HI is ln2 rounded to the format: n*_LN2_HI inside an FMA is
# exact and x - n*_LN2_HI is exact for |x - n ln2| <= ln2/2 (the bits fit), so the reduced
# argument only picks up the rounding of the second FMA.
_LN2_HI = {False: 0.6931471824645996, True: 0.6931471805599453}
_LN2_LO = {False: -1.9046542121259336e-09, True: 2.3190468138462996e-17}
# ln2 with trailing zero bits (16 / 32 significant bits) for log: k*_LN2T_HI is exact
# without an FMA for every exponent k.
_LN2T_HI = {False: 0.693145751953125, True: 0.6931471803691238}
_LN2T_LO = {False: 1.428606765330187e-06, True: 1.9082149292705877e-10}
_TWO_OVER_PI = 0.6366197723675814
# pi/2 as a sum of 4 (f32) or 3 (f64) numbers of the format (Cody-Waite with FMA).
_PIO2 = {
    False: (1.5707963705062866, -4.371138828673793e-08, -1.7151245100058819e-15,
            1.056299898220315e-23),
    True: (1.5707963267948966, 6.123233995736766e-17, -1.4973849048591698e-33),
}
_TWO3_HI, _TWO3_LO = 0.6666666666666666, 3.700743415417188e-17   # 2/3 as a double-double

# exp argument clamps: beyond HI the result is inf, below LO it is 0 (also keeps n*2 factors
# inside the normal exponent range). 89 -> n <= 128, -104 -> n >= -150 (f32); 710 / -746 (f64).
_EXP_HI = {False: 89.0, True: 710.0}
_EXP_LO = {False: -104.0, True: -746.0}
# expm1 saturates to -1 below these (e^x < half an ulp of 1); keeps 2^n a normal number.
_EXPM1_LO = {False: -30.0, True: -40.0}


def _scalef() -> bool:
    """Whether the host has AVX-512 (F): LLVM then lowers a vectorized `llvm.ldexp` to `vscalefps`
    (one instruction for exp's 2^n scaling). Without it the same intrinsic becomes one libm call
    per lane, so the integer-bits scaling is used instead."""
    from . import jit

    return jit.host_has("avx512f")


def _primitives() -> bool:
    """Whether `_Emitter.primitive` may call the AVX-512 instructions below (F and VL: every vector
    width the loop vectorizer may pick has them)."""
    from . import jit

    return jit.host_has("avx512f") and jit.host_has("avx512vl")


# ---------------------------------------------------------------------------------------
# Primitives: single AVX-512 instructions in scalar code that the loop vectorizer widens.
#
# Kernels are scalar loops that LLVM vectorizes, and target intrinsics (llvm.x86.*) have no
# scalar form it can widen. So mathlib calls a declared scalar function (`codegen_rcp14_f32`)
# that names its vector versions for each width in a "vector-function-abi-variant" attribute
# (`finish_ir`), as libmvec's functions are named; the vectorizer then calls
# `codegen_rcp14_v16f32` and so on. After the O3 pipeline, `link_primitives` links in their
# definitions, each one intrinsic call, and inlines them: the loop holds the bare instruction.
#
#   rcp14(d):      1/d with relative error < 2^-14 (vrcp14ps/pd/ss/sd), the seed of `div_in`
#   scalef(y, n):  y * 2^floor(n) rounded once, n a float (vscalefps...): exp's scaling straight
#                  from its float n, without converting an integer back
#   negsel(a, x):  a where x < 0 (-inf and negative denormals included), else 1; 1 for a NaN x
#                  (vfixupimmps: x's class picks a or 1 from a table)
# ---------------------------------------------------------------------------------------
_PRIMITIVE_OPS = {"rcp14": 1, "scalef": 2, "negsel": 2}
_PRIMITIVE_LANES = {False: (4, 8, 16), True: (2, 4, 8)}
# vfixupimm response per class of x, a nibble each, class 0 lowest: QNaN, SNaN, 0, +1, -inf, +inf,
# negative, positive; 0x0 keeps the destination (a), 0xA is +1
_NEGSEL_TABLE = 0xA0A0AAAA
_PRIMITIVE_NAME = re.compile(
    r'^declare (float|double) @"?(codegen_(rcp14|scalef|negsel)_(f32|f64))"?\(([^)]*)\)[^\n]*$',
    re.MULTILINE)


def _primitive_name(op: str, double: bool, lanes=None) -> str:
    return f"codegen_{op}_{f'v{lanes}' if lanes else ''}{'f64' if double else 'f32'}"


def _primitive_definition(op: str, double: bool, lanes=None) -> str:
    """IR text of one primitive as an inlinable function around its x86 intrinsic (all lanes
    active, the current rounding mode)."""
    elem = "double" if double else "float"
    name = _primitive_name(op, double, lanes)
    arity = _PRIMITIVE_OPS[op]
    scalar = lanes is None
    width = (2 if double else 4) if scalar else lanes
    vec = f"<{width} x {elem}>"
    ivec = f"<{width} x i{64 if double else 32}>"
    mask = "i16" if width == 16 else "i8"
    big = scalar or width * (64 if double else 32) == 512  # these forms take a rounding operand
    kind = ("s" if scalar else "p") + ("d" if double else "s")
    suffix = kind if scalar else f"{kind}.{width * (64 if double else 32)}"
    a = [f"%v{i}" if scalar else f"%a{i}" for i in range(arity)]
    zero, ones = f"{vec} zeroinitializer", f"{mask} -1"
    if op == "rcp14":
        intrinsic = f"rcp14.{suffix}"
        call = [f"{vec} {a[0]}", f"{vec} {a[0]}", zero, ones] if scalar else [f"{vec} {a[0]}", zero, ones]
    elif op == "scalef":
        intrinsic = f"mask.scalef.{suffix}"
        call = [f"{vec} {a[0]}", f"{vec} {a[1]}", zero, ones] + (["i32 4"] if big else [])
    else:  # negsel
        intrinsic = f"mask.fixupimm.{suffix}"
        table = f"{ivec} <{', '.join([f'i{64 if double else 32} {_NEGSEL_TABLE}'] * width)}>"
        call = [f"{vec} {a[0]}", f"{vec} {a[1]}", table, "i32 0", ones] + (["i32 4"] if big else [])
    types = ", ".join(_operand_type(c) for c in call)
    result = f"call {vec} @llvm.x86.avx512.{intrinsic}({', '.join(call)})"
    if scalar:
        lines = [f"  %v{i} = insertelement {vec} poison, {elem} %a{i}, i64 0" for i in range(arity)]
        lines += [f"  %r = {result}", f"  %s = extractelement {vec} %r, i64 0", f"  ret {elem} %s"]
        signature = ", ".join(f"{elem} %a{i}" for i in range(arity))
    else:
        lines = [f"  %r = {result}", f"  ret {vec} %r"]
        signature = ", ".join(f"{vec} %a{i}" for i in range(arity))
    body = "\n".join(lines)
    returned = elem if scalar else vec
    return (f"declare {vec} @llvm.x86.avx512.{intrinsic}({types})\n"
            f"define linkonce_odr {returned} @{name}({signature}) alwaysinline nounwind {{\n{body}\n}}\n")


def _operand_type(operand: str) -> str:
    """The type of an IR operand written as "<type> <value>"."""
    if operand.endswith("zeroinitializer"):
        return operand[: -len(" zeroinitializer")]
    if operand.startswith("<") and ">" in operand:
        return operand[: operand.index(">") + 1]
    return operand.split(" ", 1)[0]


def finish_ir(text: str) -> str:
    """Module text with mathlib's scalar primitive declarations (if any) given their vector
    variants: the mapping attribute, declarations of each width, and `llvm.compiler.used` to keep
    those declarations alive until the loop vectorizer looks for them."""
    found = list(_PRIMITIVE_NAME.finditer(text))
    if not found:
        return text
    used, extra = [], []
    for m in found:
        elem, name, op, kind = m.group(1), m.group(2), m.group(3), m.group(4)
        double = kind == "f64"
        arity = "v" * _PRIMITIVE_OPS[op]
        variants = []
        for lanes in _PRIMITIVE_LANES[double]:
            vector = _primitive_name(op, double, lanes)
            variants.append(f"_ZGV_LLVM_N{lanes}{arity}_{name}({vector})")
            used.append(vector)
            if not re.search(rf'^declare [^\n]*@"?{vector}"?\(', text, re.MULTILINE):
                vec = f"<{lanes} x {elem}>"
                extra.append(f"declare {vec} @{vector}({', '.join([vec] * _PRIMITIVE_OPS[op])})")
        declaration = (f"declare {elem} @{name}({m.group(5)}) nounwind willreturn memory(none) "
                       f'"vector-function-abi-variant"="{",".join(variants)}"')
        text = text.replace(m.group(0), declaration)
    if "@llvm.compiler.used" in text:
        raise ValueError("mathlib.finish_ir: the module already has @llvm.compiler.used")
    listed = ", ".join(f"ptr @{name}" for name in used)
    extra.append(f'@llvm.compiler.used = appending global [{len(used)} x ptr] [{listed}], section "llvm.metadata"')
    return text + "\n" + "\n".join(extra) + "\n"


def link_primitives(module, pass_builder):
    """After the optimization pipeline: define the primitives `module` (a llvmlite.binding
    ModuleRef) still declares and inline them. Returns the module."""
    import llvmlite.binding as llvm

    wanted = []
    for fn in module.functions:
        m = re.fullmatch(r"codegen_(\w+?)_(v(\d+))?(f32|f64)", fn.name)
        if m and m.group(1) not in _PRIMITIVE_OPS:
            m = None
        if m and fn.is_declaration:
            wanted.append(_primitive_definition(m.group(1), m.group(4) == "f64",
                                                int(m.group(3)) if m.group(3) else None))
    if not wanted:
        return module
    lines = "\n".join(wanted).splitlines()
    declared = {line for line in lines if line.startswith("declare ")}
    text = "\n".join(sorted(declared) + [line for line in lines if line not in declared])
    definitions = llvm.parse_assembly(text)
    definitions.triple, definitions.data_layout = module.triple, module.data_layout
    module.link_in(definitions)
    passes = llvm.create_new_module_pass_manager()
    passes.add_always_inliner_pass()
    passes.add_global_dead_code_eliminate_pass()
    passes.run(module, pass_builder)
    return module


@functools.cache
def _reciprocal_seed(lo: float, hi: float, degree: int):
    """(coefficients of s, lowest first; eps) for the polynomial s of `degree` that minimises
    eps = max |1 - d s(d)| over [lo, hi]: the seed of `_Emitter.div_in`.

    1 - d s(d) ranges over the polynomials of degree + 1 that are 1 at d = 0, and the smallest of
    those on [lo, hi] is the Chebyshev polynomial T_(degree+1) moved onto the interval and scaled to 1
    at 0, so eps = 1/|T_(degree+1)(L(0))| with L the map of [lo, hi] onto [-1, 1]
    ([1, 2]: 1/99 for a quadratic, 1/577 for a cubic)."""
    from numpy.polynomial import Chebyshev, Polynomial

    t = Chebyshev.basis(degree + 1, domain=[lo, hi]).convert(kind=Polynomial)
    at_zero = t(0.0)
    error = Polynomial([1.0]) - t / at_zero                    # 1 - d s(d): zero constant term
    return tuple(float(c) for c in error.coef[1:degree + 2]), 1.0 / abs(at_zero)


class _Emitter:
    """Per-call helper: the value type, its integer twin and constant/intrinsic builders."""

    def __init__(self, builder: ir.IRBuilder, ty: ir.Type):
        self.b = builder
        self.ty = ty
        if isinstance(ty, ir.VectorType):
            self.lanes = ty.count
            elem = ty.element
        else:
            self.lanes = None
            elem = ty
        if isinstance(elem, ir.DoubleType):
            self.d = True
        elif isinstance(elem, ir.FloatType):
            self.d = False
        else:
            raise TypeError(f"mathlib: unsupported type {ty} (need float/double or vectors of them)")
        self.elem = elem
        self.bits = 64 if self.d else 32
        self.mant = 52 if self.d else 23
        self.bias = 1023 if self.d else 127
        self.ity = self._wrap(ir.IntType(self.bits))
        self.i32 = self._wrap(ir.IntType(32))
        if self.lanes is None:
            self.suffix = "f64" if self.d else "f32"
        else:
            self.suffix = f"v{self.lanes}{'f64' if self.d else 'f32'}"

    # ---- types and constants ---------------------------------------------------------
    def _wrap(self, elem):
        return elem if self.lanes is None else ir.VectorType(elem, self.lanes)

    def c(self, v: float) -> ir.Constant:
        """Float constant of the value type (splat for vectors)."""
        e = ir.Constant(self.elem, float(v))
        return e if self.lanes is None else ir.Constant(self.ty, [e] * self.lanes)

    def ci(self, v: int, ty=None) -> ir.Constant:
        """Integer constant (splat); ty defaults to the same-width integer type."""
        ty = ty or self.ity
        elem = ty.element if isinstance(ty, ir.VectorType) else ty
        w = elem.width
        v &= (1 << w) - 1
        if v >= 1 << (w - 1):
            v -= 1 << w                       # print in signed form
        e = ir.Constant(elem, v)
        return e if self.lanes is None else ir.Constant(ty, [e] * self.lanes)

    # ---- intrinsics ------------------------------------------------------------------
    def intr(self, name: str, *args):
        mod = self.b.module
        full = f"llvm.{name}.{self.suffix}"
        fn = mod.globals.get(full)
        if fn is None:
            fn = ir.Function(mod, ir.FunctionType(self.ty, [self.ty] * len(args)), name=full)
        return self.b.call(fn, list(args))

    def fma(self, a, b, c):
        return self.intr("fma", a, b, c)

    def fabs(self, a):
        return self.intr("fabs", a)

    def rint(self, a):
        return self.intr("rint", a)

    def floor(self, a):
        return self.intr("floor", a)

    def trunc(self, a):
        return self.intr("trunc", a)

    def copysign(self, mag, sgn):
        return self.intr("copysign", mag, sgn)

    # ---- plain arithmetic (no fast-math flags, see module docstring) -----------------
    def add(self, a, b):
        return self.b.fadd(a, b)

    def sub(self, a, b):
        return self.b.fsub(a, b)

    def mul(self, a, b):
        return self.b.fmul(a, b)

    def div(self, a, b):
        return self.b.fdiv(a, b)

    def neg(self, a):
        return self.b.fneg(a)

    def div_in(self, n, d, lo: float, hi: float):
        """n/d for a d known to lie in [lo, hi] (0 < lo < hi) and a finite n, from FMAs only: a
        division instruction is the one operation of these kernels that does not pipeline (a 16-lane
        `vdivps` occupies the divider ~10 cycles, so two of them per vector bound a tanh+sigmoid
        loop), while this sequence is ordinary FMA work that overlaps with the rest.

        r = s(d), the polynomial seed of `_reciprocal_seed` (relative error eps), Newton steps
        r += r (1 - d r) (eps -> eps^2) until eps^2 <= 2^-(p+3) with p the mantissa bits, then one
        step with the numerator folded in: q = n r, q += r (n - d q), whose error is eps^2 relative
        on top of the final rounding: at most 1/4 ulp more than a division. A NaN n or d gives NaN; a zero n
        gives +0 (also -0: the last FMA adds +0 to it)."""
        if self.has_primitive("rcp14"):
            # AVX-512's reciprocal estimate, relative error < 2^-14 (Intel SDM, VRCP14PS): one
            # instruction for the seed polynomial and, in float32, its Newton step
            r, eps = self.primitive("rcp14", d), 2.0 ** -14
        else:
            seed, eps = _reciprocal_seed(lo, hi, 3 if self.d else 2)
            r = self.horner(d, seed)
        one, nd = self.c(1.0), self.neg(d)
        while eps * eps > 2.0 ** -(self.mant + 3):
            r = self.fma(r, self.fma(nd, r, one), r)
            eps = eps * eps
        q = self.mul(n, r)
        return self.fma(self.fma(nd, q, n), r, q)

    # ---- x86 instructions the loop vectorizer cannot reach through generic IR ---------------
    def has_primitive(self, op: str) -> bool:
        """Whether `primitive(op, ...)` is available for this value type on this host."""
        return _primitives() and (self.lanes is None or self.lanes in _PRIMITIVE_LANES[self.d])

    def primitive(self, op: str, *args):
        """`op` of `_PRIMITIVE_OPS` on this value type: a call that `finish_ir` and
        `link_primitives` turn into the one AVX-512 instruction (see `_PRIMITIVE_OPS`)."""
        name = _primitive_name(op, self.d, self.lanes)
        mod = self.b.module
        fn = mod.globals.get(name)
        if fn is None:
            fn = ir.Function(mod, ir.FunctionType(self.ty, [self.ty] * len(args)), name=name)
        return self.b.call(fn, list(args))

    def lt(self, a, b):
        return self.b.fcmp_ordered("<", a, b)

    def gt(self, a, b):
        return self.b.fcmp_ordered(">", a, b)

    def eq(self, a, b):
        return self.b.fcmp_ordered("==", a, b)

    def isnan(self, a):
        return self.b.fcmp_unordered("uno", a, a)

    def sel(self, cond, a, b):
        return self.b.select(cond, a, b)

    def min_to(self, x, hi):
        """x if x < hi else hi; a NaN x becomes hi (used before int conversions)."""
        return self.sel(self.lt(x, hi), x, hi)

    def max_to(self, x, lo):
        """x if x > lo else lo; a NaN x becomes lo."""
        return self.sel(self.gt(x, lo), x, lo)

    def clamp_keep_nan(self, x, lo, hi):
        """Clamp with the comparisons arranged so that a NaN x stays NaN."""
        x = self.sel(self.gt(x, hi), hi, x)
        return self.sel(self.lt(x, lo), lo, x)

    def horner(self, x, coefs):
        """c0 + x*(c1 + x*(c2 + ...)) with one FMA per step."""
        acc = self.c(coefs[-1])
        for cf in reversed(coefs[:-1]):
            acc = self.fma(acc, x, self.c(cf))
        return acc

    def to_int(self, a):
        """fptosi to the same-width integer, through i32 (|a| < 2^31 and never NaN here):
        double -> i64 conversion needs AVX-512DQ to vectorize, double -> i32 does not."""
        i = self.b.fptosi(a, self.i32)
        return self.b.sext(i, self.ity) if self.d else i

    def ldexp(self, y, k):
        """y * 2^k in one rounding, k an i32 (or <N x i32>): `vscalefps` with AVX-512."""
        mod = self.b.module
        isuffix = "i32" if self.lanes is None else f"v{self.lanes}i32"
        full = f"llvm.ldexp.{self.suffix}.{isuffix}"
        fn = mod.globals.get(full)
        if fn is None:
            fn = ir.Function(mod, ir.FunctionType(self.ty, [self.ty, self.i32]), name=full)
        return self.b.call(fn, [y, k])

    def pow2i(self, k):
        """2^k as a float from an integer k of the same width (normal range only)."""
        e = self.b.add(k, self.ci(self.bias))
        return self.b.bitcast(self.b.shl(e, self.ci(self.mant)), self.ty)

    def two_sum(self, a, b):
        s = self.add(a, b)
        bb = self.sub(s, a)
        err = self.add(self.sub(a, self.sub(s, bb)), self.sub(b, bb))
        return s, err

    def fast_two_sum(self, a, b):          # requires |a| >= |b| (or a == 0)
        s = self.add(a, b)
        return s, self.sub(b, self.sub(s, a))


# ---------------------------------------------------------------------------------------
# exp / expm1
# ---------------------------------------------------------------------------------------

def _exp_argument(m: _Emitter, x, lo=None, negate=False):
    """n = rint(x/ln2), r = x - n*ln2 (+ lo); returns (r, k, n) with k the integer n (same-width int)
    and n itself as a float. |x| < 2^21 (f32) / 2^50 (f64); a NaN x gives a NaN r and some k.

    n is rounded by adding 1.5 * 2^23 (2^52) in the FMA that scales x: the sum's low mantissa bits
    are n itself, so k is one integer subtraction on the bits, with no rounding instruction and no
    float-to-int conversion (both run on one execution port of x86 cores, which the rest of an
    exp-heavy loop then waits for)."""
    d = m.d
    shifter = 1.5 * 2.0 ** m.mant
    t = m.fma(x, m.c(-_LOG2E if negate else _LOG2E), m.c(shifter))
    n = m.sub(t, m.c(shifter))                  # exact: rint(x/ln2)
    k = m.b.sub(m.b.bitcast(t, m.ity), m.b.bitcast(m.c(shifter), m.ity))
    nn = m.neg(n)
    if negate:
        r = m.neg(m.fma(n, m.c(_LN2_HI[d]), x))   # -x - n*ln2_hi, exact
    else:
        r = m.fma(nn, m.c(_LN2_HI[d]), x)          # exact
    r = m.fma(nn, m.c(_LN2_LO[d]), r)
    if lo is not None:
        r = m.add(r, lo)
    return r, k, n


def _exp_reduce(m: _Emitter, x, lo=None, negate=False):
    """(p, k, n) with p = expm1(r) by polynomial, r, k and n from `_exp_argument`: e^x = 2^k (1 + p),
    and p keeps its relative accuracy for tiny r (what expm1 and tanh need)."""
    r, k, n = _exp_argument(m, x, lo, negate)
    r2 = m.mul(r, r)
    q = m.horner(r, _EXPM1_Q[m.d])
    q = m.fma(q, r, m.c(0.5))
    p = m.fma(q, r2, r)                         # r + r^2*(1/2 + r*Q(r))
    return p, k, n


def _scale(m: _Emitter, y, k, n):
    """y * 2^k for the integer k of `_exp_argument` (|k| <= 150 / 1075 after the callers' clamps;
    n is the same power as a float), rounded once, also into the denormals; 2^128 (2^1024) itself is
    not a float, so without AVX-512's one-instruction `vscalefps` the scaling is done in two steps.
    `vscalefps` takes its exponent as a float: given n itself, the integer k is not needed at all
    (LLVM's `llvm.ldexp` converts k back to a float first: two instructions more per exp)."""
    if m.has_primitive("scalef"):
        return m.primitive("scalef", y, n)
    if _scalef():
        return m.ldexp(y, m.b.trunc(k, m.i32) if m.d else k)
    # 2^(k>>1) * 2^(k - (k>>1)): the first product is exact, the second rounds once
    k1 = m.b.ashr(k, m.ci(1))
    return m.mul(m.mul(y, m.pow2i(k1)), m.pow2i(m.b.sub(k, k1)))


def _exp_core(m: _Emitter, x, lo=None):
    """exp(x [+ lo]); a NaN x gives NaN (through the arithmetic)."""
    d = m.d
    # The clamp keeps 2^n's two factors normal; exp(89) = inf and exp(-104) = 0 in f32. (AVX-512's
    # vrangeps caps a magnitude in one instruction, but turns a NaN x into the cap.)
    x = m.clamp_keep_nan(x, m.c(_EXP_LO[d]), m.c(_EXP_HI[d]))
    r, k, n = _exp_argument(m, x, lo)
    y = m.fma(m.horner(r, (1.0,) + _EXP_P[d]), r, m.c(1.0))   # 1 + r*(1 + r*P(r))
    return _scale(m, y, k, n)


def _exp(m: _Emitter, x):
    return _exp_core(m, x)


def _expm1_core(m: _Emitter, x):
    """expm1(x) for non-NaN x; -0 comes back as +0 (callers patch signed zeros)."""
    d = m.d
    maxe = m.bias                                  # 127 / 1023: largest 2^k that is a float
    x = m.max_to(m.min_to(x, m.c(_EXP_HI[d])), m.c(_EXPM1_LO[d]))
    p, k, _ = _exp_reduce(m, x)
    big = m.b.icmp_signed(">", k, m.ci(maxe))
    k = m.b.select(big, m.ci(maxe), k)            # only n = 128 (1024) reaches this
    s = m.pow2i(k)
    # 2^n*(1+p) - 1 = fma(2^n, p, 2^n - 1): 2^n - 1 is exact for |n| <= 24 (53), and
    # beyond that the -1 is negligible or the result is -1; one rounding in the fma.
    y = m.fma(s, p, m.sub(s, m.c(1.0)))
    return m.sel(big, m.mul(y, m.c(2.0)), y)


def _expm1(m: _Emitter, x):
    y = _expm1_core(m, x)
    y = m.sel(m.eq(x, m.c(0.0)), x, y)             # expm1(-0) = -0
    return m.sel(m.isnan(x), x, y)


# ---------------------------------------------------------------------------------------
# log / log1p
# ---------------------------------------------------------------------------------------

def _log_split(m: _Emitter, x, scale_denormals: bool):
    """x = 2^k * (1+f), 1+f in [sqrt(1/2), sqrt(2)); returns (k as float, f). x > 0 finite."""
    d = m.d
    kadj = None
    if scale_denormals:
        # Denormals have no implicit bit: multiply by 2^24 (2^54) first, take it off k.
        tiny = m.lt(x, m.c(2.0 ** (-1022 if d else -126)))
        sh = 54 if d else 24
        x = m.sel(tiny, m.mul(x, m.c(2.0 ** sh)), x)
        kadj = m.b.select(tiny, m.ci(-sh), m.ci(0))
    one_bits = 0x3FF0000000000000 if d else 0x3F800000
    sqh_bits = 0x3FE6A09E667F3BCD if d else 0x3F3504F3     # bits of sqrt(1/2)
    mant_mask = (1 << m.mant) - 1
    ix = m.b.bitcast(x, m.ity)
    # Adding (1.0 - sqrt(1/2)) to the bits carries into the exponent exactly when the
    # mantissa is >= sqrt(2)'s, so k and m come out already centred around 1 (musl's trick).
    ix = m.b.add(ix, m.ci(one_bits - sqh_bits))
    k = m.b.sub(m.b.ashr(ix, m.ci(m.mant)), m.ci(m.bias))
    if kadj is not None:
        k = m.b.add(k, kadj)
    mb = m.b.add(m.b.and_(ix, m.ci(mant_mask)), m.ci(sqh_bits))
    mm = m.b.bitcast(mb, m.ty)
    f = m.sub(mm, m.c(1.0))                                   # exact (Sterbenz)
    if d:   # i64 -> double conversion vectorizes only with AVX-512DQ; |k| < 2^11 fits i32
        k = m.b.trunc(k, m.i32)
    return m.b.sitofp(k, m.ty), f


def _log_kernel(m: _Emitter, kf, f, c=None):
    """k*ln2 + log(1+f) [+ c] the fdlibm way (c: a small correction term, for log1p)."""
    d = m.d
    s = m.div(f, m.add(m.c(2.0), f))
    z = m.mul(s, s)
    R = m.mul(z, m.horner(z, _LOG_R[d]))
    hfsq = m.mul(m.mul(m.c(0.5), f), f)
    lo = m.mul(kf, m.c(_LN2T_LO[d]))
    if c is not None:
        lo = m.add(lo, c)
    t = m.fma(s, m.add(hfsq, R), lo)
    # log = k*ln2_hi + (f - (hfsq - (s*(hfsq+R) + k*ln2_lo)))  (k*ln2_hi exact)
    return m.add(m.mul(kf, m.c(_LN2T_HI[d])), m.sub(f, m.sub(hfsq, t)))


def _log_specials(m: _Emitter, x, y):
    inf = math.inf
    y = m.sel(m.eq(x, m.c(inf)), m.c(inf), y)
    y = m.sel(m.eq(x, m.c(0.0)), m.c(-inf), y)             # log(+-0) = -inf
    return m.sel(m.b.fcmp_unordered("<", x, m.c(0.0)), m.c(math.nan), y)   # x<0 or NaN


def _log(m: _Emitter, x):
    kf, f = _log_split(m, x, scale_denormals=True)
    return _log_specials(m, x, _log_kernel(m, kf, f))


def _log1p(m: _Emitter, x):
    u = m.add(m.c(1.0), x)
    kf, f = _log_split(m, u, scale_denormals=False)       # u >= 2^-24 (2^-53) when u > 0
    # 1+x = u + c*u: c carries the rounding error of 1+x (fdlibm s_log1p).
    c_small = m.sub(x, m.sub(u, m.c(1.0)))                 # exact when u < 2
    c_big = m.sub(m.c(1.0), m.sub(u, x))                   # exact when u >= 2
    c = m.div(m.sel(m.gt(kf, m.c(0.0)), c_big, c_small), u)
    y = _log_kernel(m, kf, f, c)
    y = _log_specials(m, u, y)                             # x=-1 -> -inf, x<-1 -> nan, inf
    y = m.sel(m.eq(x, m.c(0.0)), x, y)                     # log1p(-0) = -0
    return m.sel(m.isnan(x), x, y)


# ---------------------------------------------------------------------------------------
# tanh / sigmoid
# ---------------------------------------------------------------------------------------

def _exp_of_minus_abs(m: _Emitter, x):
    """(e, p, (k, n)) with e = exp(-|x|) = 2^k (1 + p) from one range reduction: tanh and sigmoid both
    start here, so a kernel computing both shares it (and either one has the same bits alone).
    |x| is capped where exp(-|x|) is 0 (a NaN x stays NaN through p and e). The reduction is written
    on a = |x| with the minus signs inside the FMAs: `a > cap ? cap : a` is then one vminps (a
    negated select became a compare, an or and a masked move)."""
    d = m.d
    a = m.fabs(x)
    a = m.sel(m.gt(a, m.c(-_EXP_LO[d])), m.c(-_EXP_LO[d]), a)
    p, k, n = _exp_reduce(m, a, negate=True)
    return _scale(m, m.add(m.c(1.0), p), k, n), p, (k, n)


def _tanh_from(m: _Emitter, x, e, p, kn):
    """tanh(|x|) = (1 - e^2)/(1 + e^2) with e = exp(-|x|) and 1 - e^2 = -E (1 + e), E = expm1(-|x|)
    = fma(2^k, p, 2^k - 1) from the same reduction: no cancellation near 0, where E is accurate,
    nor where e is small. Beyond the saturation E = -1 to working precision and the quotient
    rounds to 1. The quotient is formed as E (1 + e)/(1 + e^2) = -tanh(|x|): copysign takes only its
    magnitude, so the sign of x goes back on without a negation (tanh(-0) = -0)."""
    if _scalef():
        # 2^k by the same vscalefps as e, from the same n: 2^k for k down to -150 is a denormal
        # or 0, and E = 2^k p + (2^k - 1) rounds to -1 there as it should
        s = _scale(m, m.c(1.0), *kn)
    else:
        k = kn[0]
        low = m.ci(-(m.bias - 1))                      # 2^k stays a normal number
        s = m.pow2i(m.b.select(m.b.icmp_signed("<", k, low), low, k))
    big_e = m.fma(s, p, m.sub(s, m.c(1.0)))
    t = m.div_in(m.mul(big_e, m.add(m.c(1.0), e)), m.fma(e, e, m.c(1.0)), 1.0, 2.0)
    return m.copysign(t, x)


def _sigmoid_from(m: _Emitter, x, e):
    """x >= 0: 1/(1+e), x < 0: e/(1+e): no exp overflow, and full relative accuracy for large
    negative x (results down to the denormals) instead of 1/(1+huge)."""
    if m.has_primitive("negsel"):
        numerator = m.primitive("negsel", e, x)  # one vfixupimmps for a compare and a blend
    else:
        numerator = m.sel(m.lt(x, m.c(0.0)), e, m.c(1.0))
    return m.div_in(numerator, m.add(m.c(1.0), e), 1.0, 2.0)


def _tanh(m: _Emitter, x):
    return _tanh_from(m, x, *_exp_of_minus_abs(m, x))


def _sigmoid(m: _Emitter, x):
    return _sigmoid_from(m, x, _exp_of_minus_abs(m, x)[0])


def _tanh_sigmoid(m: _Emitter, x):
    e, p, kn = _exp_of_minus_abs(m, x)
    return _tanh_from(m, x, e, p, kn), _sigmoid_from(m, x, e)


def emit_tanh_sigmoid(builder: ir.IRBuilder, x: ir.Value):
    """(tanh(x), sigmoid(x)) sharing one exp range reduction: ~40% fewer instructions than the two
    functions apart, and the same bits as each one alone (so fusing them changes no result)."""
    return _tanh_sigmoid(_Emitter(builder, x.type), x)


# ---------------------------------------------------------------------------------------
# sin / cos
# ---------------------------------------------------------------------------------------

def _sincos(m: _Emitter, x, is_cos: bool):
    d = m.d
    n = m.rint(m.mul(x, m.c(_TWO_OVER_PI)))
    nn = m.neg(n)
    parts = _PIO2[d]
    r = m.fma(nn, m.c(parts[0]), x)            # exact: the bits of x - n*P1 fit the format
    for p in parts[1:]:
        r = m.fma(nn, m.c(p), r)
    # Only for |x| far beyond the documented range can r leave [-pi/4, pi/4] by more than
    # the fit's slack; keep it there so results stay within [-1, 1] (NaN passes through).
    r = m.clamp_keep_nan(r, m.c(-_SINCOS_R[d]), m.c(_SINCOS_R[d]))
    z = m.mul(r, r)
    s = m.fma(m.mul(r, z), m.horner(z, _SIN_S[d]), r)
    cc = m.fma(z, m.fma(z, m.horner(z, _COS_C[d]), m.c(-0.5)), m.c(1.0))
    q = m.add(n, m.c(1.0)) if is_cos else n        # cos(x) = sin(x + pi/2)
    # q mod 4 in floating point (exact for integers below 2^24 / 2^53); no fptosi, which would
    # be poison for NaN/inf/huge inputs.
    qm = m.sub(q, m.mul(m.floor(m.mul(q, m.c(0.25))), m.c(4.0)))
    odd = m.b.or_(m.eq(qm, m.c(1.0)), m.eq(qm, m.c(3.0)))
    y = m.sel(odd, cc, s)
    y = m.sel(m.b.fcmp_ordered(">=", qm, m.c(2.0)), m.neg(y), y)
    if not is_cos:
        y = m.sel(m.eq(x, m.c(0.0)), x, y)         # sin(-0) = -0
    return m.sel(m.isnan(x), x, y)


def _sin(m: _Emitter, x):
    return _sincos(m, x, False)


def _cos(m: _Emitter, x):
    return _sincos(m, x, True)


# ---------------------------------------------------------------------------------------
# erf
# ---------------------------------------------------------------------------------------

def _erf(m: _Emitter, x):
    d = m.d
    a = m.fabs(x)
    # |x| < 1: odd polynomial, erf(x) = x + x*P(x^2) (one rounding at the end).
    ya = m.fma(a, m.horner(m.mul(a, a), _ERF_A[d]), a)
    # |x| >= 1: erf = 1 - erfc, erfc = t*exp(-x^2 + P(t)); the fma forms -x^2 + P with one
    # rounding (an error of ulp(x^2) there is scaled by erfc(x), which is tiny once x^2 is big).
    ab = m.sel(m.gt(a, m.c(_ERF_B_END[d])), m.c(_ERF_B_END[d]), a)
    t = m.div(m.c(2.0), m.add(m.c(2.0), ab))
    pb = m.horner(m.sub(t, m.c(_ERF_T0[d])), _ERF_B[d])
    e = _exp_core(m, m.fma(m.neg(ab), ab, pb))
    yb = m.sub(m.c(1.0), m.mul(t, e))
    y = m.copysign(m.sel(m.lt(a, m.c(1.0)), ya, yb), x)
    return m.sel(m.isnan(x), x, y)


# ---------------------------------------------------------------------------------------
# pow
# ---------------------------------------------------------------------------------------

def _log_dd(m: _Emitter, x):
    """log(x) as hi + lo with ~2^-66 relative error, for x > 0 finite (f64 only)."""
    kf, f = _log_split(m, x, scale_denormals=True)
    # s = f/(2+f) as a double-double: 2+f and the quotient with their exact errors.
    dd = m.add(m.c(2.0), f)
    dlo = m.sub(f, m.sub(dd, m.c(2.0)))
    shi = m.div(f, dd)
    rem = m.fma(m.neg(shi), dd, f)
    slo = m.div(m.sub(rem, m.mul(shi, dlo)), dd)
    # log(1+f) = 2s + (2/3)s^3 + s^5*T(s^2); the first two terms in double-double.
    z = m.mul(shi, shi)
    zlo = m.fma(shi, shi, m.neg(z))
    c3 = m.mul(shi, z)
    c3lo = m.add(m.fma(shi, z, m.neg(c3)),
                 m.fma(shi, zlo, m.mul(m.mul(m.c(3.0), z), slo)))
    t3 = m.mul(c3, m.c(_TWO3_HI))
    t3lo = m.add(m.fma(c3, m.c(_TWO3_HI), m.neg(t3)),
                 m.fma(c3, m.c(_TWO3_LO), m.mul(c3lo, m.c(_TWO3_HI))))
    tail = m.mul(m.mul(c3, z), m.horner(z, _LOG_T64))
    K = m.mul(kf, m.c(_LN2T_HI[True]))                     # exact
    s1, e1 = m.two_sum(K, m.mul(m.c(2.0), shi))
    s2, e2 = m.fast_two_sum(s1, t3)                         # |s1| >= 0.34 or s1 = 2s
    lo = m.add(m.add(e1, e2), m.add(m.mul(kf, m.c(_LN2T_LO[True])), m.mul(m.c(2.0), slo)))
    lo = m.add(lo, m.add(t3lo, tail))
    return m.fast_two_sum(s2, lo)


def _pow_specials(m: _Emitter, x, y, r):
    """C99 pow rules on top of r = exp(y*log|x|) (which already gives the 0/inf cases)."""
    one = m.c(1.0)
    ty = m.trunc(y)
    yint = m.eq(ty, y)                                   # +-inf count as (even) integers
    yodd = m.b.and_(yint, m.b.fcmp_ordered("!=", m.mul(m.trunc(m.mul(y, m.c(0.5))),
                                                         m.c(2.0)), y))
    xneg = m.b.icmp_signed("<", m.b.bitcast(x, m.ity), m.ci(0))   # sign bit (incl. -0)
    r = m.sel(m.b.and_(xneg, yodd), m.neg(r), r)
    # x < 0 finite and y not an integer: NaN (x = -inf gives +0 / +inf from the generic path).
    bad = m.b.and_(m.b.and_(m.lt(x, m.c(0.0)), m.gt(x, m.c(-math.inf))),
                   m.b.not_(yint))
    r = m.sel(bad, m.c(math.nan), r)
    # pow(-1, +-inf) = 1, pow(1, y) = 1 and pow(x, +-0) = 1 even for NaN.
    r = m.sel(m.b.and_(m.eq(x, m.c(-1.0)), m.eq(m.fabs(y), m.c(math.inf))), one, r)
    return m.sel(m.b.or_(m.eq(x, one), m.eq(y, m.c(0.0))), one, r)


def _pow(m: _Emitter, x, y):
    if not m.d:
        # f32: log and exp in f64 lanes. The f64 log's ~2^-52 relative error times
        # |y*log x| <= ~104 is far below an f32 ulp; exp in f64 then rounds to f32 once.
        dty = _F64 if m.lanes is None else ir.VectorType(_F64, m.lanes)
        md = _Emitter(m.b, dty)
        xd = md.b.fpext(x, dty)
        yd = md.b.fpext(y, dty)
        L = _log(md, md.fabs(xd))
        r = _exp(md, md.mul(yd, L))
        r = m.b.fptrunc(r, m.ty)
        return _pow_specials(m, x, y, r)
    ax = m.fabs(x)
    hi, lo = _log_dd(m, ax)
    # log specials on the hi part (0 -> -inf, inf -> inf, NaN); lo only matters when finite.
    fin = m.b.and_(m.gt(ax, m.c(0.0)), m.lt(ax, m.c(math.inf)))
    hi = _log_specials(m, ax, hi)
    lo = m.sel(fin, lo, m.c(0.0))
    # y*log|x| as a double-double (two-prod by FMA).
    ph = m.mul(y, hi)
    pl = m.fma(y, lo, m.fma(y, hi, m.neg(ph)))
    # exp of ph + pl: the low part only where ph is inside the exp range (it is NaN when
    # ph = +-inf and irrelevant once exp saturates).
    inrange = m.b.and_(m.lt(ph, m.c(_EXP_HI[True])), m.gt(ph, m.c(_EXP_LO[True])))
    pl = m.sel(inrange, pl, m.c(0.0))
    r = _exp_core(m, ph, pl)
    r = m.sel(m.isnan(ph), ph, r)
    return _pow_specials(m, x, y, r)


_IMPL = {
    "exp": _exp, "expm1": _expm1, "log": _log, "log1p": _log1p, "tanh": _tanh,
    "sigmoid": _sigmoid, "sin": _sin, "cos": _cos, "erf": _erf, "pow": _pow,
}
_ARITY = {"pow": 2}


def emit(name: str, builder: ir.IRBuilder, *args: ir.Value) -> ir.Value:
    """Emit ``name(*args)`` at the builder's position; returns a value of the argument type.

    ``name`` is one of :data:`SUPPORTED`; pow takes (x, y) of the same type, the others one
    argument. Types: float, double, <N x float>, <N x double>.
    """
    fn = _IMPL.get(name)
    if fn is None:
        raise ValueError(f"mathlib: unknown function {name!r}; supported: {sorted(SUPPORTED)}")
    want = _ARITY.get(name, 1)
    if len(args) != want:
        raise TypeError(f"mathlib: {name} takes {want} argument(s), got {len(args)}")
    ty = args[0].type
    for a in args[1:]:
        if a.type != ty:
            raise TypeError(f"mathlib: {name} arguments must have one type, got {ty} and {a.type}")
    return fn(_Emitter(builder, ty), *args)
