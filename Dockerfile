# herd's commands in one image: herd, dispatcher, worker, optimizer.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -o /out/ ./cmd/...

FROM gcr.io/distroless/static-debian12
COPY --from=build /out/ /usr/local/bin/
COPY config/herd.yaml /etc/herd/herd.yaml
USER nonroot
ENTRYPOINT ["/usr/local/bin/herd"]
