import { pageHeading } from './ui.js';
export default { title: 'overview', render(root) { root.append(pageHeading('overview')); } };
