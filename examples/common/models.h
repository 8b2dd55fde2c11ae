/* The five model families compared in the paper, and the p4m G-CNN (rotations and reflections),
 * built from one architecture description. */
#ifndef CFNET_EXAMPLES_MODELS_H
#define CFNET_EXAMPLES_MODELS_H

#include <cfnet/cfnet.h>

#include <stdint.h>

typedef enum ex_model {
    EX_CFNET = 0,    /* conic layers -> DFT transition -> dense */
    EX_CNET = 1,     /* conic layers -> dense (no DFT) */
    EX_GCNN = 2,     /* p4 layers -> group pooling -> dense */
    EX_GCNN_DFT = 3, /* p4 layers -> DFT transition from the p4 map -> dense */
    EX_CNN = 4,      /* standard convolutions -> dense */
    EX_GCNN_P4M = 5, /* p4m layers -> group pooling over D4 -> dense */
    EX_MODEL_COUNT = 6
} ex_model;

#define EX_MAX_CONV 10

typedef struct ex_arch {
    int layers;              /* convolutional layers, at most EX_MAX_CONV */
    int width[EX_MAX_CONV];  /* filters per layer */
    int R[EX_MAX_CONV];      /* conic layers: R per layer (4R rotations); 0 = 1 */
    int pool_after[EX_MAX_CONV]; /* 1: equivariant 2x2/3x3 max pooling after this layer */
    int kernel;              /* odd filter size */
    cfnet_padding padding;
    int batch_norm;          /* batch norm after each convolution (and on the DFT projection) */
    int dft_filters;         /* DFT transition: projection filters */
    int dft_R;               /* DFT transition from a planar map: 4R rotations (p4: always 1) */
    int final_pool;          /* non-DFT models: mean pooling window before the dense layer; 0 none */
    int softmax;             /* append a softmax layer */
    cfnet_interp interp;     /* conic layers: filter resampling off quarter turns (0 = nearest) */
    cfnet_interp dft_interp; /* DFT projection from a planar map: filter resampling */
    float dropout;           /* > 0: dropout with this drop probability after every convolution
                              * block (after its ReLU and pooling), as in the original code */
    int dft_head_original;   /* 1: projection -> ReLU -> |DFT| -> batch norm (the original code's
                              * order); 0: projection -> batch norm -> ReLU -> |DFT| */
} ex_arch;

/* "CFNet", "CNet", "G-CNN", "G-CNN+DFT", "CNN", "G-CNN-p4m". */
const char *ex_model_name(ex_model m);
/* Parses a name as printed (case-insensitive, "gcnn-dft" also accepted); -1 if unknown. */
int ex_model_parse(const char *name);
/* Parses a --models list (names separated by commas; empty entries are skipped) of any length
 * into out, in its order, and returns the count. Each model at most once, so out needs room for
 * EX_MODEL_COUNT. An unknown name, a name given twice or a list naming no model exits with
 * status 2 (ex_bad_arg) and a message that starts with prog. */
int ex_model_list(const char *prog, const char *list, int out[EX_MODEL_COUNT]);

/* Builds the network (exits with cfnet_last_error() on failure). */
cfnet_network *ex_build(ex_model m, const ex_arch *a, int channels, int size, int classes,
                        uint64_t seed);

/* The library's preset classifier of model m (cfnet_network_create_classifier; exits with
 * cfnet_last_error() on failure). On the 50 x 50 biomarker images (demo, features) it is: four
 * 3x3 layers, same padding, batch norm, equivariant max pooling after the first three (50 -> 25
 * -> 12 -> 6), R = 2, 2, 1, 1 for conic layers; `width` filters per layer (p4 networks: half,
 * about the same number of weights); DFT transition with `width` projection filters (p4: half),
 * 4 rotations; the other heads mean-pool 6x6 -> 3x3 before the dense layer. */
cfnet_network *ex_preset(ex_model m, int channels, int size, int classes, int width,
                         uint64_t seed);

/* Re-initialises every "weight" parameter of the network from N(0, sd^2) (the original code's
 * initialiser, sd = 0.1) with a splitmix64 generator seeded by `seed`; biases stay 0. */
void ex_init_normal(cfnet_network *net, double sd, uint64_t seed);

/* Sets the paper's recipe: Adam, learning rate, weight decay, x0.95 decay every decay_steps,
 * rotation (any angle) + jitter augmentation, threads. */
void ex_set_recipe(cfnet_network *net, double lr, double weight_decay, int decay_steps,
                   int jitter, int threads);

#endif
