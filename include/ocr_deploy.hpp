// ocr_deploy.hpp: a header-only C++11 convenience layer over the C ABI in ocr_deploy.h.
//
//     ocr::Segmenter segmenter("model.onnx");                  // throws ocr::Error
//     ocr::LabelMap labels = segmenter.predict(ocr::image(pixels, w, h, OCR_PIXEL_BGR8));
//     uint32_t cls = labels.at(y, x);
//
// Everything here calls the functions of ocr_deploy.h; it adds ownership (RAII, move-only
// handles), std::vector results and exceptions carrying ocr_last_error()'s message.
// Thread safety is the C ABI's: one Segmenter may be used from several threads.
#ifndef OCR_DEPLOY_HPP
#define OCR_DEPLOY_HPP

#include "ocr_deploy.h"

#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace ocr {

// A failed call: what() is ocr_last_error()'s one-line message, status() the ocr_status.
class Error : public std::runtime_error {
public:
    Error(ocr_status status, const std::string &message)
        : std::runtime_error(message), status_(status) {}
    ocr_status status() const { return status_; }

private:
    ocr_status status_;
};

namespace detail {
inline void check(ocr_status status)
{
    if (status != OCR_OK)
        throw Error(status, ocr_last_error());
}
}  // namespace detail

// An image view (borrowed pixels) for predict(); stride_bytes 0 means packed rows.
inline ocr_image image(const void *data, uint32_t width, uint32_t height,
                       ocr_pixel_format format = OCR_PIXEL_RGB8, size_t stride_bytes = 0)
{
    ocr_image view;
    std::memset(&view, 0, sizeof view);
    view.struct_size = sizeof view;
    view.data = data;
    view.width = width;
    view.height = height;
    view.stride_bytes = stride_bytes;
    view.pixel_format = format;
    return view;
}

// Open options; the defaults are ocr_options' defaults.
struct Options {
    std::string backend;      // "" = auto
    std::string providers;    // "" = best available
    int32_t device_id = 0;
    uint32_t threads = 0;
    uint32_t max_batch = 0;
    std::string environment;  // "" = OCR_DEPLOY_PYTHON, else the build's
};

// What a segmenter runs (ocr_model_info, copied into owning types).
struct ModelInfo {
    uint32_t num_classes = 0, input_width = 0, input_height = 0, input_channels = 0;
    ocr_label_type label_type = OCR_LABEL_U8;
    bool has_scores = false;
    uint32_t max_batch = 0;
    std::vector<std::string> class_names;
    std::vector<uint8_t> palette;  // num_classes x {R, G, B}
    std::string precision, backend, device;
};

// One label map at its image's size: u8 holds it for OCR_LABEL_U8, u16 for OCR_LABEL_U16.
struct LabelMap {
    uint32_t width = 0, height = 0;
    ocr_label_type label_type = OCR_LABEL_U8;
    std::vector<uint8_t> u8;
    std::vector<uint16_t> u16;
    uint32_t at(uint32_t y, uint32_t x) const
    {
        size_t i = static_cast<size_t>(y) * width + x;
        return label_type == OCR_LABEL_U8 ? u8.at(i) : u16.at(i);
    }
};

// Per-class scores of one image (see ocr_score_map for the layouts).
struct ScoreMap {
    uint32_t width = 0, height = 0, num_classes = 0;
    ocr_score_layout layout = OCR_SCORES_HWC;
    std::vector<float> data;
};

// An open artifact. Move-only; destroyed with the object.
class Segmenter {
public:
    explicit Segmenter(const std::string &artifact_path, const Options &options = Options())
    {
        ocr_options raw;
        std::memset(&raw, 0, sizeof raw);
        raw.struct_size = sizeof raw;
        raw.backend = options.backend.empty() ? nullptr : options.backend.c_str();
        raw.providers = options.providers.empty() ? nullptr : options.providers.c_str();
        raw.device_id = options.device_id;
        raw.threads = options.threads;
        raw.max_batch = options.max_batch;
        raw.environment = options.environment.empty() ? nullptr : options.environment.c_str();
        detail::check(ocr_segmenter_create(artifact_path.c_str(), &raw, &handle_));
        try {
            info_ = read_info();
        } catch (...) {
            ocr_segmenter_destroy(handle_);
            throw;
        }
    }
    ~Segmenter() { ocr_segmenter_destroy(handle_); }
    Segmenter(Segmenter &&other) noexcept
        : handle_(other.handle_), info_(std::move(other.info_))
    {
        other.handle_ = nullptr;
    }
    Segmenter &operator=(Segmenter &&other) noexcept
    {
        if (this != &other) {
            ocr_segmenter_destroy(handle_);
            handle_ = other.handle_;
            info_ = std::move(other.info_);
            other.handle_ = nullptr;
        }
        return *this;
    }
    Segmenter(const Segmenter &) = delete;
    Segmenter &operator=(const Segmenter &) = delete;

    const ModelInfo &info() const { return info_; }
    ocr_segmenter *handle() const { return handle_; }  // for calls this layer lacks

    // Label maps of several images (any sizes and formats), in one call.
    std::vector<LabelMap> predict(const std::vector<ocr_image> &images) const
    {
        std::vector<LabelMap> maps(images.size());
        std::vector<ocr_label_map> raw(images.size());
        for (size_t i = 0; i < images.size(); i++) {
            LabelMap &map = maps[i];
            map.width = images[i].width;
            map.height = images[i].height;
            map.label_type = info_.label_type;
            size_t pixels = static_cast<size_t>(map.width) * map.height;
            std::memset(&raw[i], 0, sizeof raw[i]);
            raw[i].struct_size = sizeof raw[i];
            raw[i].label_type = map.label_type;
            if (map.label_type == OCR_LABEL_U8) {
                map.u8.resize(pixels);
                raw[i].data = map.u8.data();
                raw[i].capacity_bytes = pixels;
            } else {
                map.u16.resize(pixels);
                raw[i].data = map.u16.data();
                raw[i].capacity_bytes = pixels * sizeof(uint16_t);
            }
        }
        detail::check(ocr_segmenter_predict(handle_, images.data(), images.size(), raw.data()));
        return maps;
    }

    LabelMap predict(const ocr_image &image) const
    {
        return predict(std::vector<ocr_image>(1, image)).front();
    }

    // Per-class scores of several images.
    std::vector<ScoreMap> predict_scores(const std::vector<ocr_image> &images,
                                         ocr_score_layout layout = OCR_SCORES_HWC) const
    {
        std::vector<ScoreMap> maps(images.size());
        std::vector<ocr_score_map> raw(images.size());
        for (size_t i = 0; i < images.size(); i++) {
            ScoreMap &map = maps[i];
            map.width = images[i].width;
            map.height = images[i].height;
            map.num_classes = info_.num_classes;
            map.layout = layout;
            map.data.resize(static_cast<size_t>(map.width) * map.height * map.num_classes);
            std::memset(&raw[i], 0, sizeof raw[i]);
            raw[i].struct_size = sizeof raw[i];
            raw[i].data = map.data.data();
            raw[i].capacity_bytes = map.data.size() * sizeof(float);
            raw[i].layout = layout;
        }
        detail::check(
            ocr_segmenter_predict_scores(handle_, images.data(), images.size(), raw.data()));
        return maps;
    }

private:
    ModelInfo read_info() const
    {
        ocr_model_info raw;
        std::memset(&raw, 0, sizeof raw);
        raw.struct_size = sizeof raw;
        detail::check(ocr_segmenter_info(handle_, &raw));
        ModelInfo info;
        info.num_classes = raw.num_classes;
        info.input_width = raw.input_width;
        info.input_height = raw.input_height;
        info.input_channels = raw.input_channels;
        info.label_type = raw.label_type;
        info.has_scores = raw.has_scores != 0;
        info.max_batch = raw.max_batch;
        info.class_names.assign(raw.class_names, raw.class_names + raw.num_classes);
        info.palette.assign(raw.palette, raw.palette + 3 * static_cast<size_t>(raw.num_classes));
        info.precision = raw.precision;
        info.backend = raw.backend;
        info.device = raw.device;
        return info;
    }

    ocr_segmenter *handle_ = nullptr;
    ModelInfo info_;
};

}  // namespace ocr

#endif  // OCR_DEPLOY_HPP
