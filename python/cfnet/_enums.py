"""The header's enums and constants as IntEnums. Arguments taking one of them also accept the
integer value or the member name in any case (``"same"``, ``"BILINEAR"``)."""
import enum
import numbers
import operator


class Status(enum.IntEnum):
    """cfnet_status: the result of every fallible call (CfnetError.status: the negative
    ones)."""
    OK = 0
    E_INVALID_ARGUMENT = -1
    E_OUT_OF_MEMORY = -2
    E_SHAPE_MISMATCH = -3
    E_IO = -4
    E_FORMAT = -5
    E_UNSUPPORTED = -6
    E_INTERNAL = -7
    E_STATE = -8
    E_LIMIT = -9
    E_NUMERIC = -10
    E_CANCELLED = -11


class LayerKind(enum.IntEnum):
    """cfnet_layer_kind: Layer.kind (values pinned: they are stored in model files)."""
    CONV2D = 1
    CONIC_CONV = 2
    P4_LIFT = 3
    P4_CONV = 4
    GROUP_POOL = 5
    DFT_PROJECTION = 6
    DFT_MAGNITUDE = 7
    DENSE = 8
    RELU = 9
    POOL = 10
    BATCH_NORM = 11
    DROPOUT = 12
    SOFTMAX = 13
    P4M_LIFT = 14
    P4M_CONV = 15
    P4M_DFT_MAGNITUDE = 16
    CONIC_CONV_MIRROR = 17


class Padding(enum.IntEnum):
    """cfnet_padding: VALID (no padding, the map shrinks) or SAME (zero padding keeps the size)."""
    VALID = 0
    SAME = 1


class Interp(enum.IntEnum):
    """cfnet_interp: how conic convolution and the DFT projection resample rotated filters."""
    NEAREST = 0
    BILINEAR = 1
    STEERABLE = 2


class PoolMode(enum.IntEnum):
    """cfnet_pool_mode: max or mean, for pool and group_pool."""
    MAX = 0
    MEAN = 1


class Mode(enum.IntEnum):
    """cfnet_mode: inference (running batch-norm statistics, no dropout) or training."""
    INFERENCE = 0
    TRAINING = 1


class Option(enum.IntEnum):
    """cfnet_option: the keys of Network.set_option, get_option and configure (there by their
    lower-case names)."""
    OPTIMIZER = 1
    LEARNING_RATE = 2
    BETA1 = 3
    BETA2 = 4
    EPSILON = 5
    MOMENTUM = 6
    WEIGHT_DECAY = 7
    LR_DECAY_RATE = 8
    LR_DECAY_STEPS = 9
    THREADS = 10
    AUG_ROTATION = 11
    AUG_JITTER = 12
    AUG_FLIP = 13


class Optimizer(enum.IntEnum):
    """cfnet_optimizer: values of the OPTIMIZER option."""
    ADAM = 0
    SGD = 1


class AugRotation(enum.IntEnum):
    """cfnet_aug_rotation: values of the AUG_ROTATION option (training augmentation)."""
    NONE = 0
    QUARTER = 1
    ANY = 2


class Limit(enum.IntEnum):
    """cfnet_limit: the loader limits of a Context (bytes)."""
    HEADER_BYTES = 1
    TENSOR_BYTES = 2


SAVE_OPTIMIZER = 1
SAVE_ALLOW_NONFINITE = 2
# cfnet_network_export_onnx: the operator set of exported models and the probabilities flag.
ONNX_OPSET = 13
ONNX_PROBABILITIES = 1
# cfnet_network_prepare_image: pad smaller images even when the model's "pad" is 0.
PREPARE_PAD = 1


INT32 = (-2**31, 2**31 - 1)
INT64 = (-2**63, 2**63 - 1)
UINT64 = (0, 2**64 - 1)


def to_int(value, what, bounds=INT32):
    """``value`` as a Python int for a C integer argument: an integer (or an integral float such
    as 16.0) within ``bounds``. ctypes would silently truncate 2.5 to 2 and wrap 2**32 + 3 to 3;
    those raise TypeError and ValueError instead, as does a str."""
    try:
        v = operator.index(value)
    except TypeError:
        if not (isinstance(value, numbers.Real) and float(value).is_integer()):
            raise TypeError("%s must be an integer, not %r" % (what, value)) from None
        v = int(value)
    lo, hi = bounds
    if not lo <= v <= hi:
        raise ValueError("%s = %d is out of range (%d .. %d)" % (what, v, lo, hi))
    return v


def to_enum(cls, value):
    """``value`` (member, int or case-insensitive name) as a member of ``cls``."""
    if isinstance(value, str):
        try:
            return cls[value.upper()]
        except KeyError:
            raise ValueError("%r is not a valid %s (one of %s)" % (value, cls.__name__,
                             ", ".join(m.name.lower() for m in cls))) from None
    try:
        return cls(value)
    except ValueError:
        raise ValueError("%r is not a valid %s" % (value, cls.__name__)) from None


class Family(enum.IntEnum):
    """Preset classifier families (cfnet_family); names as cfnet_family_name prints them, with
    "gcnn-dft" spelled GCNN_DFT."""
    CFNET = 1
    CNET = 2
    GCNN = 3
    GCNN_DFT = 4
    CNN = 5
    GCNN_P4M = 6


class SumKind(enum.IntEnum):
    """What a data-parallel sum hook adds up (cfnet_sum_kind): float32 gradients (then the loss
    share), or float64 batch-norm statistics."""
    GRADIENTS = 1
    STATISTICS = 2
