FROM python:3.11-slim
WORKDIR /srv/pgrecs
COPY . .
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
 && pip install --no-cache-dir -e .
EXPOSE 8000
CMD ["pgrecs", "serve", "--host", "0.0.0.0", "--port", "8000"]
