module flwbenchgo

go 1.21
