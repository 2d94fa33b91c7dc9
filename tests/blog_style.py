"""A legacy Keras 2 (tf_keras) OCRNet written the way the seed blog post writes it.

Raw ``tf.reshape`` / ``tf.transpose`` / ``tf.matmul`` / ``K.softmax`` calls on symbolic
tensors, which tf_keras records as ``TFOpLambda`` layers. This is what many real-world
``.h5`` files look like; the project uses it to test that the exporter and the graph
passes handle them. It only builds under tf_keras (Keras 3 refuses such code).
"""

from __future__ import annotations

from ocr_deploy.tf_env import import_tensorflow, import_tf_keras


def build_blog_style_ocrnet(num_classes: int = 5, input_size: tuple[int, int] = (64, 64),
                            channels: int = 32, key_channels: int = 16,
                            kv_projection: str = "conv"):
    """Build the blog-style OCRNet in tf_keras; outputs ``[aux_logits, logits]``.

    ``kv_projection`` chooses how key and value are projected: ``"conv"`` (1x1 Conv2D on the
    ``[B,K,1,C]`` region tensor, as the blog does) or ``"dense"`` (Dense on ``[B,K,C]``).
    """
    tf = import_tensorflow()
    keras = import_tf_keras()
    backend = keras.backend
    layers = keras.layers
    height, width = input_size

    def conv_bn_relu(x, filters, kernel=1, strides=1):
        x = layers.Conv2D(filters, kernel, strides=strides, padding="same")(x)
        x = layers.BatchNormalization()(x)
        return layers.Activation("relu")(x)

    def project(x, filters):
        if kv_projection == "dense":
            x = layers.Dense(filters)(x)
            x = layers.BatchNormalization()(x)
            return layers.Activation("relu")(x)
        return conv_bn_relu(x, filters)

    image = keras.Input((height, width, 3), name="image")
    feats = conv_bn_relu(image, channels, 3, strides=2)
    feats = conv_bn_relu(feats, channels, 3, strides=2)
    feats = conv_bn_relu(feats, channels, 3)

    soft_regions = layers.Conv2D(num_classes, 1, name="aux_logits")(conv_bn_relu(feats, channels))
    pixels = conv_bn_relu(feats, channels, 3)

    # spatial gather (the blog's OCR_gather_head)
    pr = tf.reshape(pixels, shape=[-1, pixels.shape[1] * pixels.shape[2], pixels.shape[-1]])
    sor = tf.reshape(soft_regions, shape=[-1, soft_regions.shape[1] * soft_regions.shape[2],
                                          soft_regions.shape[-1]])
    sor = backend.softmax(tf.transpose(sor, [0, 2, 1]))
    regions = tf.matmul(sor, pr)  # b, num_classes, c
    if kv_projection == "conv":
        regions = tf.expand_dims(regions, axis=-2)  # b, num_classes, 1, c

    # object attention (the blog's OCR_DISTI_HEAD, completed as in OCRNET.md)
    query = conv_bn_relu(conv_bn_relu(pixels, key_channels), key_channels)
    query = tf.reshape(query, shape=[-1, query.shape[1] * query.shape[2], query.shape[-1]])
    key = project(project(regions, key_channels), key_channels)
    key = tf.reshape(key, shape=[-1, num_classes, key_channels])
    value = project(regions, key_channels)
    value = tf.reshape(value, shape=[-1, num_classes, key_channels])
    sim = tf.matmul(query, tf.transpose(key, [0, 2, 1]))
    sim = backend.softmax(sim * (key_channels ** -0.5))
    context = tf.matmul(sim, value)
    context = tf.reshape(context, shape=[-1, pixels.shape[1], pixels.shape[2], key_channels])
    context = conv_bn_relu(context, channels)

    augmented = conv_bn_relu(layers.Concatenate()([context, pixels]), channels)
    logits = layers.Conv2D(num_classes, 1)(augmented)
    logits = tf.image.resize(logits, (height, width))
    return keras.Model(image, [soft_regions, logits], name="blog_ocrnet")
