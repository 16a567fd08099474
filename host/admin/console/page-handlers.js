import { pageHeading } from './ui.js';
export default { title: 'handlers', render(root) { root.append(pageHeading('handlers')); } };
