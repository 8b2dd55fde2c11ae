/* `cfnet export MODEL OUT.onnx`: a model file as an ONNX model (cfnet_network_export_onnx). */
#define _GNU_SOURCE
#include "tool.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

static const char export_help[] =
    "Usage: cfnet export [options] MODEL OUT.onnx\n"
    "Writes the model as an ONNX model (opset 13) for ONNX Runtime, deepImageJ, ilastik or the\n"
    "BioImage Model Zoo: input \"input\" N x C x H x W (float32, normalised as for training),\n"
    "output \"output\". The model's metadata (classes, normalisation, input size) goes into the\n"
    "ONNX metadata_props. OUT.onnx may be - (standard output). See docs/deploy.md.\n"
    "  -p, --probabilities   output class probabilities (softmax) instead of the network output\n"
    "  -q, --quiet           print nothing on success\n"
    "  -h, --help            this help\n";

int cmd_export(int argc, char **argv)
{
    static const struct option longopts[] = {{"probabilities", no_argument, 0, 'p'},
                                             {"quiet", no_argument, 0, 'q'},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    unsigned flags = 0;
    int quiet = 0, c;
    while ((c = opt_next(argc, argv, ":pqh", longopts, export_help)) >= 0) {
        switch (c) {
        case 'p': flags |= CFNET_ONNX_PROBABILITIES; break;
        case 'q': quiet = 1; break;
        default: return opt_error("export", c, argv);
        }
    }
    if (c == OPT_HELP) return EXIT_OK;
    if (argc - optind != 2)
        return tool_usage_error("export", argc - optind < 2 ? "MODEL and OUT.onnx expected"
                                                            : "only MODEL and OUT.onnx expected");
    const char *model = argv[optind], *out = argv[optind + 1];
    if (model_arg("export", "MODEL", model)) return EXIT_USAGE;
    /* as for the -o options of the other commands: an unset shell variable, found before the
     * model is read and converted */
    if (!out[0]) return tool_usage_error("export", "OUT.onnx: the file name is empty");
    if (path_is_dir(out) == 1) /* said as the other argument errors are, as predict -o's */
        return tool_usage_error("export", "OUT.onnx: %s is a folder; give a file name", out);
    if (same_file(out, model))
        return tool_usage_error("export", "OUT.onnx: %s is the model; refusing to overwrite it "
                                "(give OUT.onnx another name)", out);
    /* a folder that does not exist or cannot be written: a usage error before the model is
     * read, as for the outputs of train and predict */
    const int refused = strcmp(out, "-") ? check_writable("export", "OUT.onnx: ", out) : 0;
    if (refused) return refused; /* a usage error (2), or a full disk: an error (1) */
    cfnet_network *net;
    if (model_load(model, &net) != 0) return EXIT_RUNTIME;
    /* Written like predict's CSV (out_open): a file is replaced whole or not at all, through a
     * link the file it names, with its permissions; a device or a pipe is written to, never
     * replaced by a file; "-" is standard output. */
    void *buf = NULL;
    size_t size = 0;
    cfnet_status st = cfnet_network_export_onnx_buffer(net, flags, &buf, &size);
    if (st != CFNET_OK) {
        tool_error("%s: cannot export: %s: %s", out, cfnet_status_string(st), cfnet_last_error());
        cfnet_network_free(net);
        return EXIT_RUNTIME;
    }
    tool_out o;
    int rc = EXIT_RUNTIME;
    const int opened = out_open(&o, out, NULL, "OUT.onnx: ");
    if (opened == 130) rc = 130; /* a signal ended the wait for a FIFO's reader: said */
    if (opened == 0) {
        if (fwrite(buf, 1, size, o.f) != size) {
            tool_error("%s: write failed: %s", out, strerror(errno));
            out_discard(&o);
        } else if (out_commit(&o) == 0) {
            rc = EXIT_OK;
        }
    }
    cfnet_free(buf);
    if (rc == EXIT_OK && !quiet) {
        int64_t in[3], shape[CFNET_MAX_DIMS];
        int nd = 0, nout = 0;
        cfnet_network_input_shape(net, &nd, in);
        cfnet_network_output_shape(net, &nout, shape);
        int64_t k = 1;
        for (int i = 0; i < nout; i++) k *= shape[i];
        /* on standard error when the model itself went to standard output */
        fprintf(strcmp(out, "-") ? stdout : stderr,
                "wrote %s (ONNX opset %d): input N x %lld x %lld x %lld, output N x %lld (%s)\n",
                strcmp(out, "-") ? out : "standard output", CFNET_ONNX_OPSET, (long long)in[0],
                (long long)in[1], (long long)in[2], (long long)k,
                (flags & CFNET_ONNX_PROBABILITIES) ? "probabilities" : "network output");
    }
    cfnet_network_free(net);
    return rc;
}
