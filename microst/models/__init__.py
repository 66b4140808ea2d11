from .vgg16 import VGG16Features
