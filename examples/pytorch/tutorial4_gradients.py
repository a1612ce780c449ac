# Gradient calculation (scalar and vector-Jacobian), three ways to stop
# tracking (requires_grad_(False), detach(), no_grad) and gradients that
# accumulate across backward calls until zeroed.
import torch

x = torch.tensor([-1.5981, -0.8342, 1.3817], requires_grad=True)  # torch.randn(3)
print(x)
y = x + 2
print(y)
z = y * y * 2
print(z)
z = z.mean()
print(z)
z.backward()
print(x.grad)

# The notebook shows a stray "None" before x.grad, left from an earlier run
# of the cell; the code as written prints four lines.
x = torch.tensor([-0.1240, -0.8386, 0.2818], requires_grad=True)
print(x)
y = x + 2
print(y)
z = y * y * 2
print(z)
v = torch.tensor([0.1, 1.0, 0.001], dtype=torch.float32)
z.backward(v)
print(x.grad)

x = torch.tensor([-1.3992, -0.5867, 0.0301], requires_grad=True)
print(x)
x.requires_grad_(False)
print(x)

x = torch.tensor([0.6700, -1.7655, 0.6098], requires_grad=True)
print(x)
x.detach()
print(x)
y = x.detach()
print(y)

x = torch.tensor([-0.4035, 0.4721, 1.4661], requires_grad=True)
print(x)
y = x + 2
print(y)
with torch.no_grad():
    y = x + 2
    print(y)

weights = torch.ones(4, requires_grad=True)
for epoch in range(3):
    model_output = (weights * 3).sum()
    model_output.backward()
    print(weights.grad)

weights = torch.ones(4, requires_grad=True)
for epoch in range(3):
    model_output = (weights * 3).sum()
    model_output.backward()
    print(weights.grad)
    weights.grad.zero_()
