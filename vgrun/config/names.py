"""The valid names of every choice, importable without JAX.

Bad input must be rejected before the ~0.5 s JAX import; `tests/test_config.py`
checks that these lists equal the keys of the registries that implement them.
"""

MODELS = ("mlp", "resmlp", "rnn", "lstm", "gru", "doya", "custom")  # custom: a researcher's own (model.target)
RECURRENT = ("rnn", "lstm", "gru")
RNN_FORMS = ("standard", "pascanu")
BLOCKS = ("one", "two")  # resmlp: one layer per block, or He et al. 2016's two (model.block)
REC_INITS = ("normal", "orthogonal", "identity")
ACTS = ("sigmoid", "tanh", "relu", "leaky_relu", "elu", "selu", "gelu", "silu", "softplus", "gcu", "linear", "hard_tanh")
INIT_NAMES = ("standard", "xavier", "xavier_uniform", "he", "lecun", "orthogonal", "normal", "kumar", "yilmaz_poli")
NORMS = ("none", "batchnorm", "layernorm")
OPTIMIZERS = ("sgd", "momentum", "adam", "rmsprop", "rprop")
GRADIENT_FREE = ("ga", "openai_es", "sep_cma_es", "cma_es")  # optimizer= choices that never backpropagate
PRETRAIN = ("none", "autoencoder", "rbm")
DEVICES = ("auto", "cpu", "gpu")
SCHEDULES = ("constant", "cosine", "exponential", "warmup_cosine")
DATASETS = ("digits", "spirals", "teacher", "custom")  # custom: a researcher's own arrays (data.target)
TASKS = ("adding", "adding_hs97", "temporal_order", "copy")  # sequence tasks, for recurrent models
TASK_MIN_LEN = {"adding": 2, "adding_hs97": 20, "temporal_order": 10, "copy": 1}  # the shortest seq_len of each
DATA = DATASETS + TASKS
DTYPES = ("float32", "float64")
INPUTS = ("raw", "standardize")  # data.inputs: the features as the dataset gives them, or to zero mean, unit variance
STEERING = ("resume", "fail_fast", "verbose")  # config keys that steer a sweep and change nothing a job computes
