# The autograd tutorial: out = mean(3 (x + 2)^2) and d(out)/dx, then
# retain_graph=True so that y.backward() can run twice.
import torch

x = torch.ones(2, 2, requires_grad=True)
print(x)
print(x.data)
print(x.grad)
print(x.grad_fn)

y = x + 2
print(y)
print(y.grad_fn)

z = y * y * 3
out = z.mean()
print(z, out)

out.backward()
print(x.grad)

x = torch.ones(2, 2, requires_grad=True)
y = x + 2
y.backward(torch.ones(2, 2), retain_graph=True)
print(x.grad)

z = y * y
print(z)

# torch.randn(2, 2) in the tutorial, fixed so that x.grad shows its figures
gradient = torch.tensor([[-0.8349, -0.0071], [-1.6825, 1.6321]])
y.backward(gradient)
print(x.grad)
