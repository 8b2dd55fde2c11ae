// A host program (an image viewer's plugin, say) that classifies images with a model trained by
// `cfnet train`, following docs/deploy.md ("A model trained with the `cfnet` command, in a host
// program") and nothing else: it reads the TIFF files itself with libtiff into its own uint16
// buffers, prepares each image as the model's metadata says with the doc's own code (its
// prepare_image() around cfnet_network_prepare_image, which tests/test_host.sh copies into
// prepare_image.h) and calls cfnet_network_probabilities. It prints `cfnet
// predict`'s CSV (path, predicted, one column per class, "%.6g"), or with --exact the
// probabilities as hexadecimal floats (bit-for-bit comparisons).
//
//   predict_host [--exact] [--dump] [--locale] [--batch N] [--threads T] [--workers W]
//                [--normalization SETTING] MODEL IMAGE.tif...
//
// --batch N classifies N images per call (default 64, as predict); --threads T > 0 runs the
// batches in T threads of the host at once on the one loaded network; --workers W sets the
// network's CFNET_OPTION_THREADS; --locale calls setlocale(LC_ALL, "") first, as a GUI
// application does; --dump writes each image's pixels as read to PATH.u16 (little-endian int32
// C, H, W, then the uint16 values; for the test's Python host, which has no TIFF reader);
// --normalization replaces the model's "normalization" in the loaded network (for the test that
// a wrong setting gives another CSV).
// The images must be 16-bit grey TIFFs, one page per channel (what `cfnet synth` writes); any
// other kind is refused with a message (a real host would read its own formats).
#include <cfnet/cfnet.h>
#include <tiffio.h>

#include "prepare_image.h" // docs/deploy.md's prepare_image()

#include <algorithm>
#include <clocale>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

struct Model {
    cfnet_network *net = nullptr;
    int channels = 0, size = 0, classes = 0;
    std::vector<std::string> names;
};

[[noreturn]] void die(const std::string &what)
{
    std::fprintf(stderr, "predict_host: %s\n", what.c_str());
    std::exit(1);
}

void check(cfnet_status st, const char *what)
{
    if (st != CFNET_OK)
        die(std::string(what) + ": " + cfnet_status_string(st) + " (" + cfnet_last_error() + ")");
}

const char *meta(const Model &m, const char *key)
{
    const char *v = nullptr;
    check(cfnet_network_get_metadata(m.net, key, &v), "get_metadata");
    if (!v) die(std::string("the model has no metadata '") + key + "'");
    return v;
}

// The "classes" entry is a JSON array of strings; this host reads plain names (a real one would
// use its JSON library).
std::vector<std::string> parse_names(const char *json)
{
    std::vector<std::string> out;
    const char *p = std::strchr(json, '[');
    if (!p) die("classes is not a JSON array");
    for (p++; *p && *p != ']'; p++) {
        if (*p != '"') continue;
        std::string s;
        for (p++; *p && *p != '"'; p++) {
            if (*p == '\\' && p[1]) p++;
            s += *p;
        }
        out.push_back(s);
    }
    return out;
}

Model load(const char *path, const char *normalization)
{
    Model m;
    check(cfnet_network_load(path, &m.net), path);
    if (normalization)
        check(cfnet_network_set_metadata(m.net, "normalization", normalization), "set_metadata");
    int nd = 0;
    int64_t in[3];
    check(cfnet_network_input_shape(m.net, &nd, in), "input_shape"); // C, S, S: the batch's rows
    m.channels = static_cast<int>(in[0]);
    m.size = static_cast<int>(in[1]);
    m.names = parse_names(meta(m, "classes"));
    m.classes = static_cast<int>(m.names.size());
    return m;
}

// The image as stored, C x H x W, in the host's own uint16 buffer: one channel per page.
std::vector<uint16_t> read_tiff(const char *path, int &C, int &H, int &W)
{
    TIFF *tif = TIFFOpen(path, "r");
    if (!tif) die(std::string(path) + ": cannot open");
    std::vector<uint16_t> px;
    C = 0;
    do {
        uint32_t w = 0, h = 0;
        uint16_t bits = 0, spp = 1;
        TIFFGetField(tif, TIFFTAG_IMAGEWIDTH, &w);
        TIFFGetField(tif, TIFFTAG_IMAGELENGTH, &h);
        TIFFGetFieldDefaulted(tif, TIFFTAG_BITSPERSAMPLE, &bits);
        TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLESPERPIXEL, &spp);
        if (bits != 16 || spp != 1 || TIFFIsTiled(tif))
            die(std::string(path) + ": not a 16-bit grey TIFF in strips");
        if (C == 0) {
            W = static_cast<int>(w);
            H = static_cast<int>(h);
        } else if (static_cast<int>(w) != W || static_cast<int>(h) != H) {
            die(std::string(path) + ": pages of different sizes");
        }
        px.resize(static_cast<size_t>(C + 1) * H * W);
        for (int y = 0; y < H; y++)
            if (TIFFReadScanline(tif, &px[(static_cast<size_t>(C) * H + y) * W], y, 0) < 0)
                die(std::string(path) + ": read error");
        C++;
    } while (TIFFReadDirectory(tif));
    TIFFClose(tif);
    return px;
}

// The image as stored (C x H x W), converted to float32 and prepared with docs/deploy.md's
// prepare_image() into row i of batch (N x C x S x S). The library refuses other channels and
// images smaller than S when the model's "pad" is 0.
void prepare(const Model &m, const char *path, cfnet_tensor *batch, int i, bool dump)
{
    int C = 0, H = 0, W = 0;
    std::vector<uint16_t> raw = read_tiff(path, C, H, W);
    if (dump) { // PATH.u16: C, H, W as little-endian int32, then the uint16 values as read
        FILE *f = std::fopen((std::string(path) + ".u16").c_str(), "wb");
        const int32_t dims[3] = {C, H, W};
        if (!f || std::fwrite(dims, sizeof dims, 1, f) != 1 ||
            std::fwrite(raw.data(), sizeof(uint16_t), raw.size(), f) != raw.size() || std::fclose(f))
            die(std::string(path) + ".u16: cannot write");
    }
    std::vector<float> img(raw.begin(), raw.end());
    check(prepare_image(m.net, img.data(), C, H, W, 0, batch, i), path);
}

// Probabilities of images [b0, b0 + nb) (prepared in x) into p.
void classify(const Model &m, const float *x, int64_t nb, float *p)
{
    int64_t xs[4] = {nb, m.channels, m.size, m.size}, ps[2] = {nb, m.classes};
    cfnet_tensor *tx = nullptr, *tp = nullptr;
    check(cfnet_tensor_wrap_const(x, 4, xs, &tx), "tensor_wrap_const");
    check(cfnet_tensor_wrap(p, 2, ps, &tp), "tensor_wrap");
    check(cfnet_network_probabilities(m.net, tx, tp), "network_probabilities");
    cfnet_tensor_free(tx);
    cfnet_tensor_free(tp);
}

} // namespace

int main(int argc, char **argv)
{
    bool exact = false, dump = false;
    int batch = 64, threads = 0, workers = 0, a = 1;
    const char *normalization = nullptr;
    for (; a < argc && argv[a][0] == '-'; a++) {
        if (!std::strcmp(argv[a], "--exact")) exact = true;
        else if (!std::strcmp(argv[a], "--dump")) dump = true;
        else if (!std::strcmp(argv[a], "--locale")) {
            // the case is only a test if the environment's locale really has a decimal comma
            if (!std::setlocale(LC_ALL, "") || std::strcmp(std::localeconv()->decimal_point, ","))
                die("--locale: the environment's locale has no decimal comma");
        }
        else if (!std::strcmp(argv[a], "--batch") && a + 1 < argc) batch = std::atoi(argv[++a]);
        else if (!std::strcmp(argv[a], "--threads") && a + 1 < argc) threads = std::atoi(argv[++a]);
        else if (!std::strcmp(argv[a], "--workers") && a + 1 < argc) workers = std::atoi(argv[++a]);
        else if (!std::strcmp(argv[a], "--normalization") && a + 1 < argc) normalization = argv[++a];
        else die(std::string("unknown option ") + argv[a]);
    }
    if (argc - a < 2 || batch < 1)
        die("usage: predict_host [--exact] [--dump] [--locale] [--batch N] [--threads T] "
            "[--workers W] [--normalization SETTING] MODEL IMAGE...");
    TIFFSetWarningHandler(nullptr);
    Model m = load(argv[a++], normalization);
    if (workers > 0)
        check(cfnet_network_set_option(m.net, CFNET_OPTION_THREADS, workers), "set_option");
    const int n = argc - a;
    const size_t per = static_cast<size_t>(m.channels) * m.size * m.size;
    std::vector<float> x(per * n), p(static_cast<size_t>(m.classes) * n);
    int64_t xs[4] = {n, m.channels, m.size, m.size};
    cfnet_tensor *tx = nullptr;
    check(cfnet_tensor_wrap(x.data(), 4, xs, &tx), "tensor_wrap");
    if (threads > 0) { // the viewer's worker threads, all on the one loaded network, each
                       // preparing and classifying its own batches
        std::vector<std::thread> pool;
        for (int t = 0; t < threads; t++)
            pool.emplace_back([&, t] {
                for (int b0 = t * batch; b0 < n; b0 += threads * batch) {
                    const int nb = std::min(batch, n - b0);
                    for (int i = b0; i < b0 + nb; i++) prepare(m, argv[a + i], tx, i, dump);
                    classify(m, &x[per * b0], nb, &p[static_cast<size_t>(m.classes) * b0]);
                }
            });
        for (std::thread &th : pool) th.join();
    } else {
        for (int i = 0; i < n; i++) prepare(m, argv[a + i], tx, i, dump);
        for (int b0 = 0; b0 < n; b0 += batch)
            classify(m, &x[per * b0], std::min(batch, n - b0), &p[static_cast<size_t>(m.classes) * b0]);
    }
    cfnet_tensor_free(tx);

    std::setlocale(LC_ALL, "C"); // the CSV with decimal points, whatever --locale set
    std::printf("path,predicted");
    for (const std::string &s : m.names) std::printf(",%s", s.c_str());
    std::printf("\n");
    for (int i = 0; i < n; i++) {
        const float *q = &p[static_cast<size_t>(m.classes) * i];
        int best = 0;
        for (int k = 1; k < m.classes; k++)
            if (q[k] > q[best]) best = k;
        std::printf("%s,%s", argv[a + i], m.names[best].c_str());
        for (int k = 0; k < m.classes; k++)
            std::printf(exact ? ",%a" : ",%.6g", static_cast<double>(q[k]));
        std::printf("\n");
    }
    cfnet_network_free(m.net);
    return 0;
}
