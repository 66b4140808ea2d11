from .vgg16 import VGG16Features
from .johnson import TransformerNet
from .ulyanov import TextureNet
