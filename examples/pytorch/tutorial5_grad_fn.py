# Tensor and Variable, ops on a leaf, grad_fn.next_functions, zeroing .grad,
# the error of a second backward through freed buffers, and a gradient
# that flows to one input only. (x.volatile and .numpy() cells left out.)
import torch
from torch.autograd import Variable

tensor = torch.FloatTensor([[1, 2], [3, 4]])
x = Variable(tensor, requires_grad=True)
print(tensor)
print(x)

print((x.sum(), x.sqrt(), x ** 2))
print(x.data)
print((x.requires_grad, x.grad, x.grad_fn))

x = Variable(torch.FloatTensor([3]), requires_grad=True)
y = 2 * x + 3
print((x.requires_grad, y.requires_grad))
print(y.grad_fn.next_functions[0][0])

y.backward()
print(x.grad)
print(x.grad.data.zero_())
try:
    y.backward(torch.Tensor([3.0]))
except RuntimeError as e:
    print("RuntimeError:", e)
print(x.grad)

x1 = Variable(torch.ones(2), requires_grad=True)
x2 = Variable(torch.ones(2))
y = x1 * 2 + x2
print(y)
y.backward(torch.Tensor([1, 1]))
print((x1.grad, x2.grad))
